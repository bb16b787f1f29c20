"""The web app (optional extra ``pip install fewshot_det[app]``): teach classes from
example boxes, detect on photos and folders, review a split with ground truth.

    fewshot-app --config CFG --weights CKPT [--data SPEC ...] [--root DIR ...]

Routes and pages only: the model is the package's ``Predictor`` (and its stages, through
``engine.fewshot`` for imprinting), the metrics are ``evaluation.evaluate``'s. Importing
this package does not import the web library; ``create_app`` and ``main`` do.

* ``images``   uploads checked before they are kept, dataset photos, allowed folders
* ``jobs``     the model worker thread: every model call is a job the page polls
* ``session``  the served model and the classes taught to it
* ``review``   detections of a split, evaluated and matched per image
* ``state``    the operations behind the routes
* ``routes``   FastAPI routes and the Jinja2 pages; ``cli`` the command line
"""


def create_app(state):
    """The FastAPI application serving an ``AppState`` (``fewshot_det.app.state``)."""
    from .routes import create_app as _create

    return _create(state)


def main(argv=None) -> int:
    """``fewshot-app``: see ``fewshot_det.app.cli``."""
    from .cli import main as _main

    return _main(argv)
