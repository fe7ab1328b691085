"""The web dashboard (``pip install 'flowcraft[ui]'``, ``flowcraft ui --backend URL``): runs
list, run pages with the blueprint drawn as a graph coloured by node status, live updates over
server-sent events, and resume / cancel / retry / fork behind a token. Its templates, style
sheet and script ship in the package; nothing is fetched from a CDN."""

from flowcraft_ui.app import create_app

__all__ = ["create_app"]
