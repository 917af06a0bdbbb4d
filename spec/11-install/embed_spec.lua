-- A C program embedding the installed libberth (examples/embed.c: a store
-- in a directory, blobs, a manifest, a tag), built as strict C99, as C++
-- and through the CMake package, and run.
local helpers = require "helpers"
local support = require "11-install.support"

local q = support.q
local EXAMPLE = helpers.cwd() .. "/examples"

describe("a program embedding the installed library", function()
  local prefix, pc, out

  setup(function()
    prefix = support.install()
    pc = "PKG_CONFIG_PATH=" .. q(prefix .. "/lib/pkgconfig")
      .. " pkg-config --cflags --libs berth"
    out = helpers.tmpdir()
  end)

  -- run(exe) -> its output, after checking it stored and read back a tag
  local function run(exe)
    local store = helpers.tmpdir()
    local text = support.must(support.RUN_ENV .. " " .. q(exe) .. " "
      .. q(store))
    assert.matches("^example/app:v1 sha256:%x+\nlayer sha256:%x+\n"
      .. "gc: 3 kept, 0 removed\n$", text)
    return text
  end

  it("builds as C99 with -pedantic -Werror (pkg-config) and runs", function()
    support.must("cc -std=c99 -pedantic -Wall -Wextra -Werror "
      .. q(EXAMPLE .. "/embed.c") .. " $(" .. pc .. ") -Wl,-rpath,"
      .. q(prefix .. "/lib") .. " -o " .. q(out .. "/embed-c99"))
    run(out .. "/embed-c99")
  end)

  it("builds as C++ with g++ -pedantic -Werror and runs", function()
    support.must("g++ -x c++ -std=c++11 -pedantic -Wall -Wextra -Werror "
      .. q(EXAMPLE .. "/embed.c") .. " $(" .. pc .. ") -Wl,-rpath,"
      .. q(prefix .. "/lib") .. " -o " .. q(out .. "/embed-cxx"))
    run(out .. "/embed-cxx")
  end)

  it("builds through find_package(berth) and runs", function()
    local b = out .. "/cmake"
    support.must("cmake -S " .. q(EXAMPLE) .. " -B " .. q(b)
      .. " -DCMAKE_PREFIX_PATH=" .. q(prefix)
      .. " '-DCMAKE_C_FLAGS=-std=c99 -pedantic -Werror' >/dev/null"
      .. " && cmake --build " .. q(b) .. " >/dev/null")
    run(b .. "/embed")
  end)

  it("needs neither libcrypt, libberth-auth nor libcurl (a storage"
    .. " embedder)",
    function()
      local needed = support.must("readelf -d "
        .. q(prefix .. "/lib/libberth.so") .. " | grep NEEDED")
      assert.matches("libmbedcrypto", needed) -- hashing
      assert.is_nil(needed:find("libcrypt.", 1, true))
      assert.is_nil(needed:find("libberth-auth", 1, true))
      assert.is_nil(needed:find("libcurl", 1, true)) -- libberth-s3's
    end)
end)
