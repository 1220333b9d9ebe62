"""A stand-in for the user's browser (`BROWSER="python tests/fakes/browser.py %s"`): opens the URL and
follows the redirects, as a browser does after the person agrees on the consent page."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

if __name__ == "__main__":
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=30) as answer:
            answer.read()
    except urllib.error.URLError as e:
        print(f"fake browser: {e}", file=sys.stderr)
