"""The web console, served at ``/`` next to the API (``millrace run`` and ``millrace api``).

Built with NiceGUI (FastAPI + Vue/Quasar, ships ECharts and AG Grid; no Node toolchain).
The pages are Python running in the API process; what they show comes from the REST API
itself, called in process with the signed-in user's token (:mod:`.client`), so every
permission and identity scope the console honours is the API's own. Gating in the
console (:mod:`.session`) only hides what the API would refuse anyway.

Layout:

- :mod:`.mount` — :func:`~.mount.console_app` wraps the API app: console paths go to
  NiceGUI, everything else to the API exactly as before (its 404/405 answers included).
- :mod:`.shell` — registers the sign-in page and every page of :data:`.pages.PAGES`
  behind the session check and the shared :mod:`.layout` (header, status, navigation).
- :mod:`.pages` — one module per page, registered in one list.

Nothing here imports NiceGUI at import time except the page modules and the shell, which
only :func:`~.mount.console_app` imports.
"""
