#!/usr/bin/env python3
"""Checks the internal links of a built mdBook (HTML), offline.

Usage: ci/guide_links.py BOOK_DIR

Every href and src of every HTML file under BOOK_DIR that is not a URL
with a scheme (http:, mailto:, ...) must name a file inside BOOK_DIR, and
its #fragment, if any, an id (or a name) in that file. Exits 1 listing
each broken link, 2 on a usage error; prints how many links were checked.

Why a script (measured on the 2-core CI machine): mdbook-linkcheck2 0.13,
the fork that speaks mdBook 0.5's renderer protocol, checks that linked
files exist but not anchors (a link to a missing heading passed), and takes
5 min 27 s to build; lychee 0.24 (`--offline --include-fragments`) checks
both and agrees with this script on the guide, but takes 7 min 50 s to
build, a quarter of the whole cold CI run. This reads the HTML mdBook
wrote, with the standard library only. ci/guide.sh runs it on a broken
fixture first, so a checker that finds nothing fails.
"""

import os
import sys
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit


class Page(HTMLParser):
    """The ids, links and <base href> of one HTML file."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids = set()
        self.links = []  # (line, attribute value)
        self.base = None

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value is None:
                continue
            if name in ("id", "name") and (name == "id" or tag == "a"):
                self.ids.add(value)
            if name in ("href", "src") and tag in ("a", "link", "script", "img", "iframe", "source"):
                self.links.append((self.getpos()[0], value))
        if tag == "base":
            self.base = dict(attrs).get("href")

    handle_startendtag = handle_starttag


def main():
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    root = os.path.realpath(sys.argv[1])
    pages = {}
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith(".html"):
                path = os.path.join(d, f)
                page = Page()
                with open(path, encoding="utf-8") as fh:
                    page.feed(fh.read())
                pages[path] = page

    broken = []
    checked = 0
    for path, page in sorted(pages.items()):
        rel = os.path.relpath(path, root)
        base_dir = os.path.dirname(path)
        if page.base and page.base.startswith("/"):
            # mdBook's 404 page: links are relative to the site root.
            base_dir = os.path.join(root, page.base.lstrip("/"))
        for line, link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith("//"):
                continue  # external: not checked offline
            checked += 1
            target = path
            if parts.path:
                if parts.path.startswith("/"):
                    target = os.path.join(root, unquote(parts.path).lstrip("/"))
                else:
                    target = os.path.join(base_dir, unquote(parts.path))
                target = os.path.realpath(target)
                if os.path.isdir(target):
                    target = os.path.join(target, "index.html")
            where = f"{rel}:{line}: {link}"
            if os.path.commonpath([root, target]) != root:
                broken.append(f"{where}: outside the book ({os.path.relpath(target, root)})")
                continue
            if not os.path.isfile(target):
                broken.append(f"{where}: no file {os.path.relpath(target, root)}")
                continue
            fragment = unquote(parts.fragment)
            if fragment and target.endswith(".html"):
                if fragment not in pages[target].ids:
                    broken.append(f"{where}: no id {fragment!r} in {os.path.relpath(target, root)}")

    for b in broken:
        print(b)
    print(f"{checked} internal links in {len(pages)} pages checked, {len(broken)} broken")
    if checked == 0:
        print("no internal link found: is this a built book?", file=sys.stderr)
        return 1
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
