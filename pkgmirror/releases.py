"""
Changing what a stage holds: storing a checked upload, deleting releases (and a mirror's cached
copies), yanking. The rules (volatile or not, who wins a race) live here; HTTP is in
``web/upload.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import attrs
from packaging.version import InvalidVersion, Version

from pkgmirror.interfaces import Conflict, ISpool, NotFound
from pkgmirror.model import IndexConfig, ReleaseFile, iso_time
from pkgmirror.names import parse_dist_filename
from pkgmirror.server import Refused, Server
from pkgmirror.upload import CheckedUpload, metadata_is_servable


@attrs.frozen
class Stored:
    """What an upload did: ``created`` is False when the same bytes were there already."""

    release: ReleaseFile
    created: bool


def normal_version(version: str) -> str:
    """A version as release files and pages spell it (PEP 440 normal form when it parses)."""
    try:
        return str(Version(version))
    except InvalidVersion:
        return version


async def drop_unreferenced(server: Server, sha256s: Iterable[str | None]) -> None:
    """Deletes those of the blobs that nothing references any more. Hold ``blob_lock``."""
    candidates = [s for s in sha256s if s]
    if not candidates:
        return
    for sha in await server.storage.unreferenced(candidates):
        await server.blobs.delete(sha)


async def store_upload(
    server: Server, config: IndexConfig, user: str | None, spool: ISpool, checked: CheckedUpload
) -> Stored:
    """
    Makes a checked upload part of ``config``'s stage. Takes ownership of ``spool`` (commits or
    aborts it). Fails with Refused(409) when the file name is taken by other bytes on a
    non-volatile index, or while another upload of that name is being stored.
    """
    key = (config.key, checked.filename)
    if key in server.uploads_in_flight:
        spool.abort()
        raise Refused(
            409, f"{checked.filename} is being uploaded to {config.key} by another request"
        )
    server.uploads_in_flight.add(key)
    try:
        await server.blob_lock.acquire()
        try:
            return await _store(server, config, user, spool, checked)
        finally:
            server.blob_lock.release()
    finally:
        spool.abort()
        server.uploads_in_flight.discard(key)


async def _store(
    server: Server, config: IndexConfig, user: str | None, spool: ISpool, checked: CheckedUpload
) -> Stored:
    existing = next(
        (
            f
            for f in await server.storage.list_release_files(config.key, checked.project)
            if f.filename == checked.filename
        ),
        None,
    )
    sha256 = spool.hexdigest()
    if existing is not None and existing.sha256 == sha256:
        return Stored(existing, created=False)
    if existing is not None and not config.volatile:
        raise Refused(
            409,
            f"{checked.filename} already exists in non-volatile index {config.key} "
            "with other contents",
        )
    await spool.commit(sha256)
    metadata_sha256 = (
        await server.blobs.put_bytes(checked.core_metadata)
        if metadata_is_servable(checked.filename, checked.core_metadata)
        else None
    )
    release = ReleaseFile(
        index=config.key,
        project=checked.project,
        version=checked.version,
        filename=checked.filename,
        sha256=sha256,
        size=spool.size,
        upload_time=iso_time(time.time()),
        requires_python=checked.requires_python,
        metadata_sha256=metadata_sha256,
        uploader=user,
        metadata=checked.metadata,
    )
    try:
        await server.storage.add_release_file(release, overwrite=config.volatile)
    except Conflict:
        await drop_unreferenced(server, [sha256, metadata_sha256])
        raise Refused(
            409, f"{checked.filename} already exists in {config.key} with other contents"
        ) from None
    except NotFound:
        await drop_unreferenced(server, [sha256, metadata_sha256])
        raise Refused(404, f"index {config.key} no longer exists") from None
    if existing is not None:
        await drop_unreferenced(server, [existing.sha256, existing.metadata_sha256])
    server.release_files_changed(config.key, checked.project, True)
    return Stored(release, created=True)


async def delete_stage_releases(
    server: Server,
    config: IndexConfig,
    project: str,
    version: str | None,
    force: bool = False,
    filename: str | None = None,
) -> None:
    """
    Deletes a project's files (of one version, or the one file ``filename``) from a stage;
    volatile indexes only, unless ``force`` (devpi's ``?force``, ``devpi remove --force``).
    """
    if not config.volatile and not force:
        what = filename or (f"version {version}" if version else "project")
        raise Refused(
            403,
            f"cannot delete {what} on non-volatile index {config.key}: "
            "make it volatile first (volatile=True), or force it (devpi remove --force)",
        )
    await server.blob_lock.acquire()
    try:
        try:
            unreferenced = await server.storage.delete_release_files(
                config.key, project, None if version is None else normal_version(version), filename
            )
        except NotFound:
            what = f"version {version} of {project}" if version else f"project {project}"
            what = filename or what
            raise Refused(404, f"{what} not found on {config.key}") from None
        for sha in unreferenced:
            await server.blobs.delete(sha)
    finally:
        server.blob_lock.release()
    remaining = await server.storage.list_release_files(config.key, project)
    server.release_files_changed(config.key, project, bool(remaining))


async def copy_release(
    server: Server, files: list[ReleaseFile], target: IndexConfig
) -> list[ReleaseFile]:
    """
    devpi's push: the files of one release, added to the stage ``target``. Files are
    content-addressed, so the copies name the same blobs and no bytes move. Fails with
    Refused(409), copying nothing, when ``target`` is non-volatile and has one of the file names
    with other bytes; on a volatile target other bytes are replaced.
    """
    await server.blob_lock.acquire()
    try:
        project = files[0].project
        existing = {
            f.filename: f for f in await server.storage.list_release_files(target.key, project)
        }
        if not target.volatile:
            for f in files:
                old = existing.get(f.filename)
                if old is not None and old.sha256 != f.sha256:
                    raise Refused(
                        409, f"{f.filename} already exists in non-volatile index {target.key}"
                    )
        copied = []
        replaced: list[str | None] = []
        for f in sorted(files, key=lambda f: f.filename):
            copy = attrs.evolve(f, index=target.key)
            try:
                await server.storage.add_release_file(copy, overwrite=target.volatile)
            except NotFound:
                raise Refused(404, f"index {target.key} no longer exists") from None
            old = existing.get(f.filename)
            if old is not None and old.sha256 != f.sha256:
                replaced += [old.sha256, old.metadata_sha256]
            copied.append(copy)
        await drop_unreferenced(server, replaced)
    finally:
        server.blob_lock.release()
    server.release_files_changed(target.key, project, True)
    return copied


async def delete_mirror_cache(
    server: Server,
    config: IndexConfig,
    project: str,
    version: str | None,
    filename: str | None = None,
) -> int:
    """
    Forgets a mirror's cached copies of a project's files (of one version, or the one file
    ``filename``; for the whole project also its cached page). They are fetched again when next
    asked. Fires with how many files were cached.
    """
    mirror = server.mirrors[config.key]
    state = await server.storage.get_mirror_page(config.key, project)
    filenames: list[str] | None = None
    if filename is not None:
        filenames = [filename]
    elif version is not None:
        wanted = normal_version(version)
        links = state.page.links if state is not None and state.page is not None else ()
        filenames = [
            link.filename
            for link in links
            if (parsed := parse_dist_filename(link.filename)) is not None and parsed[1] == wanted
        ]
        if not filenames:
            raise Refused(404, f"version {version} of {project} is not cached on {config.key}")
    elif state is None:
        raise Refused(404, f"project {project} is not cached on {config.key}")
    await server.blob_lock.acquire()
    try:
        unreferenced = await server.storage.uncache_mirror_files(config.key, project, filenames)
        mirror.forget_files()
        for sha in unreferenced:
            await server.blobs.delete(sha)
    finally:
        server.blob_lock.release()
    if filenames is None:
        mirror.forget(project)
    return len(unreferenced)


async def yank(
    server: Server, config: IndexConfig, project: str, version: str, reason: str | None
) -> str:
    """
    Yanks (reason "" or text) or un-yanks (None) a release as ``config`` serves it: its own
    files directly, a mirror's or a base's release for this stage and the stages on it. Fires
    with what was done, in words.
    """
    if config.is_mirror:
        raise Refused(
            405,
            f"{config.key} is a mirror: yank {project} {version} on a stage that uses it",
        )
    version = normal_version(version)
    own = await server.storage.set_yanked(config.key, project, version, reason)
    if own:
        server.release_files_changed(config.key, project, True)
    if reason is None:
        had = version in server.stage_yanks.get(config.key, {}).get(project, {})
        if had:
            await server.set_stage_yank(config.key, project, version, None)
        if not own and not had:
            raise Refused(404, f"{project} {version} is not yanked on {config.key}")
        return f"{project} {version} un-yanked on {config.key}"
    if not own:
        resolved = await server.project_page(config.key, project)
        versions = {
            parsed[1]
            for link in resolved.page.links
            if (parsed := parse_dist_filename(link.filename)) is not None
        }
        if version not in versions:
            raise Refused(404, f"version {version} of {project} not found on {config.key}")
        await server.set_stage_yank(config.key, project, version, reason)
    return f"{project} {version} yanked on {config.key}" + (f": {reason}" if reason else "")


__all__ = [
    "Stored",
    "delete_mirror_cache",
    "delete_stage_releases",
    "drop_unreferenced",
    "normal_version",
    "store_upload",
    "yank",
]
