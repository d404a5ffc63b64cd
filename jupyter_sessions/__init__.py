"""jupyter-sessions: agent sessions for Jupyter.

Entry points: the server extension (`SessionsApp`, auto-enabled by pip install) and the IPython
extension (`%load_ext jupyter_sessions`).
"""

__version__ = "0.1.0"


def _jupyter_labextension_paths():
    """The built side panel (labextension/ -> jupyter_sessions/labextension) for JupyterLab."""
    return [{"src": "labextension", "dest": "jupyter-sessions"}]


def _jupyter_server_extension_points():
    from .app import SessionsApp

    return [{"module": "jupyter_sessions", "app": SessionsApp}]


def load_ipython_extension(ipython):
    """`%load_ext jupyter_sessions`: registers the %session and %%agent magics."""
    try:
        from .magics import SessionMagics
    except ImportError:  # magics arrive with the notebook issue
        return
    ipython.register_magics(SessionMagics)


def unload_ipython_extension(ipython):
    """Nothing to release: magics hold no server state."""
