"""Imports over HTTP (admins): a GIS file uploaded into a layer, the imports listed, one
reverted. The HTTP shape of twin.imports.load and twin.history.revert.revert_import."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile

from api.deps import EngineDep, SettingsDep, UserDep
from api.errors import SIGNED, errors
from api.params import Id
from api.routes.revert import RevertBody
from twin.errors import NotFound, Problem, TooLarge
from twin.history.revert import revert_import
from twin.imports.load import ImportOptions, import_file, list_imports, require_admin
from twin.imports.rows import parse_pairs

# admins only (403)
router = APIRouter(tags=["imports"], responses=errors(*SIGNED, 403))

@router.post("/collections/{layer}/import",
             summary="Import a GIS file into a layer (admin): GeoPackage, zipped Shapefile, "
                     "GeoJSON, FlatGeobuf, CSV", responses=errors(404, 413, 422))
def import_upload(
    layer: str, engine: EngineDep, user: UserDep, settings: SettingsDep,
    file: Annotated[UploadFile, File(description="the file; a Shapefile as a .zip")],
    crs: Annotated[str | None, Form(description="the file's CRS when it does not say")] = None,
    datum: Annotated[str | None, Form(description="gcj02 or bd09: traced off a web map")
                     ] = None,
    map: Annotated[list[str] | None, Form(description="FILE_FIELD=ATTRIBUTE, repeated")
                   ] = None,
    id: Annotated[str | None, Form(description="the field that identifies a row")] = None,
    file_layer: Annotated[str | None, Form(description="the file's layer, if several")
                          ] = None,
    dry_run: Annotated[bool, Form(description="report only, write nothing")] = False,
    skip_bad: Annotated[bool, Form(description="import the good rows of a file with bad "
                                               "ones")] = False,
    sync: Annotated[bool, Form(description="delete the layer's features not in the file")
                    ] = False,
) -> dict[str, Any]:
    """The import's report: rows read, new, changed, unchanged, deleted, skipped, and every bad
    row's problems (row, field, value, reason). A file with bad rows is refused whole (422,
    the same problems) unless ``skip_bad``; ``dry_run`` writes nothing."""
    require_admin(user)
    name = Path(file.filename or "upload").name
    with tempfile.TemporaryDirectory(prefix="twin-import-") as folder:
        path = Path(folder) / name
        with path.open("wb") as out:
            shutil.copyfileobj(file.file, out, 1024 * 1024)
        size = path.stat().st_size
        if size > settings.import_max_bytes:
            raise TooLarge(f"the file is {size:,} bytes; at most {settings.import_max_bytes:,} "
                           "(TWIN_IMPORT_MAX_BYTES), or use `twin import` on the server",
                           [Problem("file", size, "too large", "文件过大")])
        options = ImportOptions(crs=crs, datum=datum, pairs=parse_pairs(map or []), id_field=id,
                                file_layer=file_layer, dry_run=dry_run, skip_bad=skip_bad,
                                sync=sync)
        return import_file(engine, user, path, layer, options, shown_name=name).as_dict()


@router.get("/imports", summary="The imports, newest first (admin)")
def imports_list(engine: EngineDep, user: UserDep,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    require_admin(user)
    with engine.connect() as conn:
        return {"imports": list_imports(conn, max(1, min(limit, 1000)))}


@router.get("/imports/{import_id}", summary="One import: its file, options and counts (admin)",
            responses=errors(404))
def get_import(import_id: Id, engine: EngineDep, user: UserDep) -> dict[str, Any]:
    require_admin(user)
    with engine.connect() as conn:
        found = list_imports(conn, 1, import_id)
    if not found:
        raise NotFound(f"no import {import_id}")
    return found[0]


@router.post("/imports/{import_id}/revert", summary="Undo every change of one import (admin)",
             responses=errors(404, 409, 422))
def revert_one_import(import_id: Id, body: RevertBody, engine: EngineDep,
                      user: UserDep) -> dict[str, Any]:
    return {"reverted": [asdict(r) for r in revert_import(engine, user, import_id,
                                                            body.reason)]}
