# Jupyter reads its token from a file (a secret mounted read-only), never
# from argv or the environment, and so never prints it in its log.
import os

c = get_config()  # noqa: F821 (provided by Jupyter)
_token_file = os.environ.get("JUPYTER_TOKEN_FILE")
if _token_file:
    with open(_token_file) as _f:
        c.IdentityProvider.token = _f.read().strip()
c.ServerApp.ip = "0.0.0.0"
c.ServerApp.port = int(os.environ.get("JUPYTER_PORT", "8888"))
c.ServerApp.open_browser = False
c.ServerApp.allow_remote_access = True
# Dev containers install nothing from PyPI at run time: no extension manager
# (JupyterLab 4.2's PyPI manager also fails on start with httpx >= 0.28).
c.LabApp.extension_manager = "readonly"
