-- A handler for a custom artifact type: a chart manifest that lists the
-- blobs of a chart. The store checks that every blob it names is in the
-- repository; validate adds the chart's own rules.
--   { "mediaType": "application/vnd.example.chart.manifest.v1+json",
--     "name": "hello", "version": "1.2.3",
--     "blobs": [ { "mediaType": "application/vnd.example.chart.content.v1.tar+gzip",
--                  "digest": "sha256:...", "size": 1234 } ],
--     "subject": { "mediaType": ..., "digest": ..., "size": ... } }   (optional)
local CONTENT = "application/vnd.example.chart.content.v1.tar+gzip"

return {
  media_type = "application/vnd.example.chart.manifest.v1+json",

  -- doc is the body decoded as JSON (nil when it is not JSON)
  parse = function(body, doc)
    if type(doc) ~= "table" or type(doc.blobs) ~= "table" then
      return nil, "chart manifest needs a blobs array"
    end
    return doc
  end,

  references = function(chart)
    local refs = {}
    for i, b in ipairs(chart.blobs) do
      refs[i] = { kind = "blob", digest = b.digest, size = b.size,
                  media_type = b.mediaType }
    end
    return refs
  end,

  validate = function(chart, store)
    if type(chart.name) ~= "string" or not chart.name:find("^[a-z0-9-]+$") then
      return nil, "chart name must be lower case letters, digits and -"
    end
    if type(chart.version) ~= "string"
        or not chart.version:find("^%d+%.%d+%.%d+") then
      return nil, "chart version must be semantic (1.2.3)"
    end
    local content = 0
    for _, b in ipairs(chart.blobs) do
      if b.mediaType == CONTENT then content = content + 1 end
    end
    if content ~= 1 then
      return nil, "a chart has exactly one content blob, not " .. content
    end
    return true
  end,

  subject = function(chart)
    local s = chart.subject
    if type(s) == "table" then
      return { digest = s.digest, size = s.size, media_type = s.mediaType }
    end
  end,

  artifact_type = function(chart)
    return "application/vnd.example.chart.v1"
  end,
}
