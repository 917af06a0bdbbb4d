"""botocore signs the requests spec/01-unit/sigv4_test.c generated.

    python3 sigv4_oracle.py CASES

CASES has one request a line (see gen_case_write in sigv4_test.c: words,
strings as "x" + hex). For each, one line out: "x<hex answer> x<hex
canonical request>", the answer being the Authorization value, or for a
presigned request the URL's query with its parameters sorted and
X-Amz-Signature last (berth's order; the service does not care). The path
is built here with Python's own quote(), not berth's encoder.

Exit 3 when botocore is missing (Debian: python3-botocore).
"""
import datetime
import sys
import types
from urllib.parse import quote, urlsplit

try:
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
except ImportError:
    sys.stderr.write("sigv4_oracle.py: no botocore (python3-botocore)\n")
    sys.exit(3)

NOW = [0]


class FixedDatetime(datetime.datetime):
    """What botocore.auth takes the time from (datetime.datetime.utcnow)."""

    @classmethod
    def utcnow(cls):
        return cls.fromtimestamp(NOW[0], datetime.timezone.utc).replace(
            tzinfo=None)


botocore.auth.datetime = types.SimpleNamespace(datetime=FixedDatetime)


def recording(cls):
    """The signer, keeping the canonical request it signed."""

    class Recording(cls):
        def canonical_request(self, request):
            self.last_canonical = super().canonical_request(request)
            return self.last_canonical

    return Recording


HeaderAuth = recording(botocore.auth.S3SigV4Auth)
QueryAuth = recording(botocore.auth.S3SigV4QueryAuth)


def unhex(word):
    assert word[0] == "x", word
    return bytes.fromhex(word[1:])


def sign(words):
    kind, when, expires, payload = words[0], int(words[1]), int(words[2]), \
        words[3]
    region, access, secret, method, bucket, key, body = (
        unhex(w) for w in words[4:11])
    region, access, secret, method, bucket = (
        b.decode() for b in (region, access, secret, method, bucket))
    pos = 11
    nq = int(words[pos])
    pos += 1
    query = []
    for _ in range(nq):
        query.append((unhex(words[pos]).decode(),
                      unhex(words[pos + 1]).decode()))
        pos += 2
    nh = int(words[pos])
    pos += 1
    headers = []
    for _ in range(nh):
        headers.append((unhex(words[pos]).decode(),
                        unhex(words[pos + 1]).decode()))
        pos += 2
    host = next(v for n, v in headers if n.lower() == "host")

    NOW[0] = when
    creds = Credentials(access, secret)
    path = "/" + bucket + "/" + quote(key, safe="/")
    request = AWSRequest(method=method, url="http://" + host + path,
                         data=body, params=query)
    for name, value in headers:
        request.headers[name] = value  # appends: names may repeat
    if kind == "presign":
        signer = QueryAuth(creds, "s3", region, expires=expires)
        request.params = dict(query)
        signer.add_auth(request)
        pairs = [p.partition("=")[::2]
                 for p in urlsplit(request.url).query.split("&")]
        sig = [v for k, v in pairs if k == "X-Amz-Signature"]
        rest = sorted((k, v) for k, v in pairs if k != "X-Amz-Signature")
        answer = "&".join(k + "=" + v for k, v in rest) + \
            "&X-Amz-Signature=" + sig[0]
    else:
        signer = HeaderAuth(creds, "s3", region)
        request.context["client_config"] = types.SimpleNamespace(
            s3={"payload_signing_enabled": payload == "signed"})
        signer.add_auth(request)
        answer = request.headers["Authorization"]
    return answer, signer.last_canonical


def main():
    with open(sys.argv[1], encoding="ascii") as cases:
        for line in cases:
            answer, canonical = sign(line.split())
            sys.stdout.write("x%s x%s\n" % (answer.encode().hex(),
                                            canonical.encode().hex()))


main()
