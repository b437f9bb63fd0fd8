#!/usr/bin/env python3
"""Independent check of an Alibaba Cloud request signature, written from the official SDKs'
algorithm (alibabacloud-openapi-util for ACS3-HMAC-SHA256, aliyun-python-sdk-core for V1) with
the Python standard library only. It shares no code with the exporter.

Input on stdin (JSON): {"method": ..., "uri": "/?...", "headers": [[name, value], ...], "secret": ...}
Output: "OK" or "MISMATCH <expected> <given>"; exit status 0 either way, 2 on malformed input.
"""
import base64
import hashlib
import hmac
import json
import sys
from urllib.parse import quote, unquote


def enc(s):
    # The SDKs: quote(safe='~'), then '+' -> %20, '*' -> %2A, '%7E' -> '~'.
    return quote(s, safe="~").replace("+", "%20").replace("*", "%2A").replace("%7E", "~")


def query_params(uri):
    _, _, query = uri.partition("?")
    params = {}
    for pair in filter(None, query.split("&")):
        k, _, v = pair.partition("=")
        params[unquote(k)] = unquote(v)
    return params


def verify_v3(method, uri, headers, secret):
    auth = headers["authorization"]
    fields = dict(p.strip().split("=", 1) for p in auth[len("ACS3-HMAC-SHA256 "):].split(","))
    signed = fields["SignedHeaders"].split(";")
    params = query_params(uri)
    canonical_query = "&".join(f"{k}={enc(params[k])}" for k in sorted(params))
    canonical_headers = "".join(f"{h}:{headers[h].strip()}\n" for h in sorted(signed))
    canonical = "\n".join([
        method, "/", canonical_query, canonical_headers, ";".join(sorted(signed)),
        headers["x-acs-content-sha256"],
    ])
    to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode()).hexdigest()
    expected = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    return expected, fields["Signature"]


def verify_v1(method, uri, secret):
    params = query_params(uri)
    given = params.pop("Signature")
    canonical = "&".join(f"{enc(k)}={enc(params[k])}" for k in sorted(params))
    to_sign = f"{method}&{enc('/')}&{enc(canonical)}"
    digest = hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode(), given


def main():
    try:
        req = json.load(sys.stdin)
        headers = {k.lower(): v for k, v in req["headers"]}
        if headers.get("authorization", "").startswith("ACS3-HMAC-SHA256"):
            expected, given = verify_v3(req["method"], req["uri"], headers, req["secret"])
        else:
            expected, given = verify_v1(req["method"], req["uri"], req["secret"])
    except (KeyError, ValueError) as e:
        print(f"malformed input: {e!r}")
        return 2
    print("OK" if hmac.compare_digest(expected, given) else f"MISMATCH {expected} {given}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
