"""
The legacy upload API (``POST /USER/INDEX/``, what twine, uv, poetry, pdm, hatch and devpi
upload send), and the HTTP side of deleting and yanking releases.

The request body is on disk by the time we run (twisted.web spools it; ``assemble.TimedRequest``
refuses bodies over the limit while they arrive). Parsing it, copying the file into a blob spool
and looking inside the archive happen in a thread; storing happens in ``releases``.
"""

from __future__ import annotations

import tempfile
from typing import IO, Any

from twisted.web.resource import Resource
from twisted.web.server import Request

from pkgmirror.interfaces import ISpool
from pkgmirror.model import IndexConfig, MirrorFile, ReleaseFile
from pkgmirror.releases import delete_mirror_cache, delete_stage_releases, store_upload, yank
from pkgmirror.server import Refused, Server
from pkgmirror.upload import (
    FORM_OVERHEAD,
    CheckedUpload,
    UploadError,
    UploadForm,
    boundary_of,
    check_upload,
    read_form,
)
from pkgmirror.web.util import (
    authenticated_user,
    challenge_headers,
    envelope,
    read_json,
    render_async,
)


async def _user(request: Request, server: Server) -> str | None:
    """The authenticated user; wrong credentials are a 401 that makes clients ask again."""
    try:
        return await authenticated_user(request, server)
    except Refused as e:
        if e.code == 401:
            raise Refused(401, e.message, {**e.headers, **challenge_headers()}) from None
        raise


async def uploader(request: Request, server: Server, config: IndexConfig) -> str | None:
    """Who uploads, if ``acl_upload`` lets them: else Refused 401 (who are you?) or 403."""
    user = await _user(request, server)
    acl = config.acl_upload
    if ":ANONYMOUS:" in acl:
        return user
    if user is None:
        raise Refused(
            401, f"authentication required to upload to {config.key}", challenge_headers()
        )
    if ":AUTHENTICATED:" in acl or user in acl:
        return user
    allowed = ", ".join(acl) or "nobody"
    raise Refused(403, f"user {user} may not upload to {config.key} (acl_upload: {allowed})")


async def release_manager(request: Request, server: Server, config: IndexConfig) -> str:
    """Who deletes or yanks: the index's owner, root, or (on a stage) an uploader."""
    user = await _user(request, server)
    if user is None:
        raise Refused(401, f"authentication required to change {config.key}", challenge_headers())
    if user in (config.user, "root"):
        return user
    uploaders = () if config.is_mirror else config.acl_upload
    if user in uploaders or ":AUTHENTICATED:" in uploaders:
        return user
    raise Refused(403, f"user {user} may not change releases on {config.key}")


class UploadResource(Resource):
    """``POST /USER/INDEX/``: one file per request, ``:action=file_upload``."""

    isLeaf = True

    def __init__(self, server: Server, user: str, name: str) -> None:
        super().__init__()
        self.app = server
        self.key = f"{user}/{name}"

    def render_POST(self, request: Request) -> Any:
        return render_async(request, self.app, lambda: self.upload(request))

    async def upload(self, request: Request) -> bytes:
        config = self.app.indexes.get(self.key)
        if config is None:
            raise Refused(404, f"index {self.key} does not exist")
        if config.is_mirror:
            raise Refused(
                405, f"cannot upload to {self.key}: it is a mirror; upload to a stage index"
            )
        user = await uploader(request, self.app, config)
        limit = self.app.settings.max_upload_size
        length = request.getHeader(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit + FORM_OVERHEAD:
            raise Refused(413, f"upload larger than this server's limit of {limit} bytes")
        content_type = request.getHeader(b"content-type")
        try:
            boundary = boundary_of(content_type.decode("latin-1") if content_type else None)
        except UploadError as e:
            raise Refused(e.code, e.message) from None
        assert request.content is not None
        body = request.content
        spool = self.app.blobs.new_spool()
        try:
            _form, checked = await self.app.run_in_thread(
                lambda: receive(body, boundary, spool, limit)
            )
        except UploadError as e:
            spool.abort()
            raise Refused(e.code, e.message) from None
        except BaseException:
            spool.abort()
            raise
        if checked is None:
            spool.abort()
            return _text(
                request, "nothing to register: versions appear when their files are uploaded"
            )
        stored = await store_upload(self.app, config, user, spool, checked)
        if not stored.created:
            return _text(request, f"{checked.filename}: identical file already in {self.key}")
        return _text(request, f"stored {self.key}/+f/{stored.release.path_key}/{checked.filename}")


def receive(
    body: IO[bytes], boundary: bytes, spool: ISpool, limit: int
) -> tuple[UploadForm, CheckedUpload | None]:
    """
    Blocking (run in a thread): the form, with the file copied into ``spool``, and the checked
    upload (None for a metadata-only ``submit``, which older tools send before uploading).
    """
    body.seek(0)
    if spool.path is not None:
        form = read_form(body, boundary, spool.write, limit)
        return form, _checked(form, spool.path.path)
    # A spool with no local file (a remote blob store): check a temporary copy.
    with tempfile.NamedTemporaryFile() as copy:

        def both(chunk: bytes) -> None:
            spool.write(chunk)
            copy.write(chunk)

        form = read_form(body, boundary, both, limit)
        copy.flush()
        return form, _checked(form, copy.name)


def _checked(form: UploadForm, path: str) -> CheckedUpload | None:
    if form.get(":action") == "submit" and form.filename is None:
        return None
    return check_upload(form, path)


def _text(request: Request, message: str) -> bytes:
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    return (message + "\n").encode("utf-8")


async def delete_release(
    request: Request,
    server: Server,
    config: IndexConfig,
    project: str,
    version: str | None,
    force: bool = False,
) -> bytes:
    """``DELETE /USER/INDEX/PROJECT[/VERSION]``: a stage's files, or a mirror's cached copies."""
    await release_manager(request, server, config)
    what = f"version {version} of {project}" if version else f"project {project}"
    if config.is_mirror:
        count = await delete_mirror_cache(server, config, project, version)
        message = f"{what}: cached copies dropped from {config.key} ({count} files)"
    else:
        await delete_stage_releases(server, config, project, version, force)
        message = f"{what} deleted from {config.key}"
    return envelope(request, "actionlog", [], message=message)


async def delete_file(
    request: Request,
    server: Server,
    config: IndexConfig,
    record: ReleaseFile | MirrorFile,
    force: bool = False,
) -> bytes:
    """``DELETE /USER/INDEX/+f/...``: one of a stage's files, or a mirror's cached copy of one."""
    await release_manager(request, server, config)
    if isinstance(record, MirrorFile):
        count = await delete_mirror_cache(server, config, record.project, None, record.filename)
        done = "cached copy dropped from" if count else "was not cached on"
        message = f"{record.filename}: {done} {config.key}"
    else:
        await delete_stage_releases(
            server, config, record.project, record.version, force, filename=record.filename
        )
        message = f"{record.filename} deleted from {config.key}"
    return envelope(request, "actionlog", [], message=message)


async def yank_release(
    request: Request, server: Server, config: IndexConfig, project: str, version: str | None
) -> bytes:
    """
    ``PATCH /USER/INDEX/PROJECT/VERSION`` with ``{"yanked": REASON}`` (a string, ``true`` for
    no reason) or ``{"yanked": false}`` to un-yank.
    """
    if version is None:
        raise Refused(405, "yank a version: PATCH /USER/INDEX/PROJECT/VERSION")
    await release_manager(request, server, config)
    body = read_json(request)
    if not isinstance(body, dict) or set(body) != {"yanked"}:
        raise Refused(400, 'expected {"yanked": "reason"}, {"yanked": true} or {"yanked": false}')
    value = body["yanked"]
    if value is True:
        reason: str | None = ""
    elif value is False or value is None:
        reason = None
    elif isinstance(value, str):
        reason = " ".join(value.split())[:1000]
    else:
        raise Refused(400, "yanked must be a reason (a string), true or false")
    message = await yank(server, config, project, version, reason)
    return envelope(request, "actionlog", [], message=message)


__all__ = ["UploadResource", "delete_release", "receive", "uploader", "yank_release"]
