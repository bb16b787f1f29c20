"""The HTTP layer: pages (Jinja2 templates) and the JSON API over ``AppState``.

Every route is thin: it parses the request, calls ``AppState`` and answers JSON. Model
work comes back as a job id; the page polls ``GET /api/jobs/{id}``. Errors reach the page
as ``{"error": message}``: 400 for the user's input (``ValueError``), 404 for an unknown
id (``KeyError``), 500 for anything else (logged with its traceback, never sent).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from typing import List, Optional

from fastapi import FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from .. import __version__
from .images import UploadError
from .review import image_boxes, summary
from .state import AppState, results_json

logger = logging.getLogger(__name__)

HERE = os.path.dirname(os.path.abspath(__file__))
PAGES = ("teach", "detect", "review")


class TeachRequest(BaseModel):
    name: str = ""
    image: str
    box: list = []
    new: bool = True
    search: Optional[str] = None
    sliced: Optional[bool] = None


class DetectRequest(BaseModel):
    images: List[str] = []
    folder: str = ""
    sliced: Optional[bool] = None


class ReviewRequest(BaseModel):
    dataset: int = 0
    limit: int = 0
    sliced: Optional[bool] = None


class LoadRequest(BaseModel):
    search: Optional[str] = None
    sliced: Optional[bool] = None


def create_app(state: AppState) -> FastAPI:
    """The FastAPI application serving ``state``."""
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        state.jobs.shutdown()  # a running job stops at its next image

    app = FastAPI(title="fewshot_det", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None, lifespan=lifespan)
    app.state.app_state = state
    app.mount("/static", StaticFiles(directory=os.path.join(HERE, "static")), name="static")
    _add_error_handlers(app)
    _add_pages(app, state)
    _add_photo_routes(app, state)
    _add_teach_routes(app, state)
    _add_detect_routes(app, state)
    _add_review_routes(app, state)
    return app


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    async def user_error(request: Request, exc: Exception):
        return _error(400, str(exc))

    async def not_found(request: Request, exc: KeyError):
        return _error(404, str(exc.args[0]) if exc.args else "not found")

    async def bad_request(request: Request, exc: RequestValidationError):
        parts = [f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}"
                 for e in exc.errors()]
        return _error(400, "malformed request: " + "; ".join(parts))

    app.add_exception_handler(ValueError, user_error)
    app.add_exception_handler(FileNotFoundError, user_error)
    app.add_exception_handler(KeyError, not_found)
    app.add_exception_handler(RequestValidationError, bad_request)

    @app.middleware("http")
    async def internal_error(request: Request, call_next):
        try:
            return await call_next(request)
        except Exception as e:  # the server keeps running; the page gets a message
            logger.exception("%s %s failed", request.method, request.url.path)
            return _error(500, f"internal error ({type(e).__name__}); see the server's log")


def _add_pages(app: FastAPI, state: AppState) -> None:
    templates = Jinja2Templates(directory=os.path.join(HERE, "templates"))

    @app.get("/", include_in_schema=False)
    def index():
        return RedirectResponse("/teach")

    def page(name: str):
        def render(request: Request):
            return templates.TemplateResponse(request, f"{name}.html", {
                "page": name, "pages": PAGES, "info": state.describe(),
                "dataset_labels": [dataset_label(s) for s in state.datasets],
                "version": __version__})
        render.__name__ = f"page_{name}"
        return render

    for name in PAGES:
        app.get(f"/{name}", include_in_schema=False)(page(name))


def _add_photo_routes(app: FastAPI, state: AppState) -> None:
    @app.get("/api/state")
    def get_state():
        return state.describe()

    @app.post("/api/images")
    async def upload(files: List[UploadFile] = File(...)):
        accepted, rejected = [], []
        for f in files:
            data = await f.read()
            try:
                stored = await run_in_threadpool(state.store.add_upload, f.filename or "", data)
                accepted.append(stored.to_json())
            except UploadError as e:
                rejected.append({"name": f.filename, "error": str(e)})
        body = {"images": accepted, "rejected": rejected}
        if rejected and not accepted:
            body["error"] = "; ".join(r["error"] for r in rejected)
            return JSONResponse(body, status_code=400)
        return body

    @app.get("/api/images/{image_id}")
    def image_file(image_id: str):
        return FileResponse(state.store.get(image_id).path)

    @app.get("/api/datasets/{index}/images")
    def dataset_images(index: int, offset: int = 0, limit: int = 60):
        return state.dataset_images(index, offset, limit)

    @app.get("/api/jobs/{job_id}")
    def job_status(job_id: str):
        return state.jobs.get(job_id).to_json()

    @app.post("/api/jobs/{job_id}/cancel")
    def job_cancel(job_id: str):
        job = state.jobs.get(job_id)
        job.cancel()
        return job.to_json(with_result=False)


def _add_teach_routes(app: FastAPI, state: AppState) -> None:
    @app.post("/api/classes")
    def teach(req: TeachRequest):
        return state.teach(req.name, req.image, req.box, new=req.new, search=req.search,
                           sliced=req.sliced).to_json()

    @app.delete("/api/classes/{name}")
    def forget(name: str):
        return state.forget(name).to_json()

    @app.post("/api/supports/save")
    def save_supports():
        return state.save_supports()

    @app.post("/api/supports/load")
    def load_supports(req: LoadRequest):
        return state.load_supports(search=req.search, sliced=req.sliced).to_json()


def _add_detect_routes(app: FastAPI, state: AppState) -> None:
    @app.post("/api/detect")
    def detect(req: DetectRequest):
        if req.folder:
            return state.detect_folder(req.folder, sliced=req.sliced).to_json()
        return state.detect(req.images, sliced=req.sliced).to_json()

    @app.get("/api/detect/{job_id}/results.json")
    def detect_results(job_id: str, score: float = 0.0):
        job = state.jobs.get(job_id)
        if job.kind not in ("detect", "teach") or job.status != "done":
            raise KeyError(f"no finished detection run {job_id!r}")
        if job.kind == "detect":
            detections = job.data
        else:  # a class taught and searched for on one photo
            detections = [job.result["detections"]] if job.result["detections"] else []
        return _json_download(results_json(detections, score), f"detections_{job_id}.json")


def _add_review_routes(app: FastAPI, state: AppState) -> None:
    @app.post("/api/review")
    def review(req: ReviewRequest):
        return state.review(req.dataset, req.limit, sliced=req.sliced).to_json()

    @app.get("/api/review/{job_id}")
    def review_summary(job_id: str, score: float = 0.5):
        return summary(state.review_run(job_id), score)

    @app.get("/api/review/{job_id}/image/{image_id}")
    def review_image(job_id: str, image_id: str, score: float = 0.5, cls: str = ""):
        return image_boxes(state.review_run(job_id), state.store, image_id, score, cls or None)

    @app.get("/api/review/{job_id}/results.json")
    def review_results(job_id: str):
        run = state.review_run(job_id)
        return _json_download(run.results, f"review_{job_id}.json")


def dataset_label(spec: str) -> str:
    """A short name for a dataset spec: "voc: VOC2007 [test]" (the spec as is otherwise)."""
    from ..data import is_spec
    from ..data.specs import parse_spec

    if not is_spec(spec):
        return spec
    try:
        kind, args = parse_spec(spec)
    except ValueError:
        return spec
    if kind == "coco":
        return f"coco: {os.path.basename(args['json_file'])}"
    return f"{kind}: {os.path.basename(os.path.normpath(args['root']))} [{args['split']}]"


def _json_download(data, filename: str) -> Response:
    return Response(json.dumps(data), media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
