"""Image uploads: checked by content, stored in the shared media root under random names.

The original trusted the client's file name and MIME type. Here Pillow must
recognise and verify the bytes as PNG, JPEG, GIF or WebP, the file must be at
most 2 MB, and it is stored as ``<32 random hex>.<extension of the real
format>`` — so a user can neither overwrite someone else's file nor smuggle
HTML or scripts in under an image name. Files are written to a temporary name
and renamed, so other servers never serve half a file. A file is stored before
the row that names it; if the database then refuses the row (a failover, a
read-only server), NewFiles removes the file again, so no file that no row
names stays on the shared volume.
"""

import os
import re
import secrets

from django.conf import settings
from django.db import transaction
from PIL import Image

from quiz.models import Attachment

FORMATS = {
    "PNG": ("png", "image/png"),
    "JPEG": ("jpg", "image/jpeg"),
    "GIF": ("gif", "image/gif"),
    "WEBP": ("webp", "image/webp"),
}
CONTENT_TYPES = {ext: mime for ext, mime in FORMATS.values()}
NAME_RE = re.compile(r"^[0-9a-f]{32}\.(png|jpg|gif|webp)$")


class UploadRejected(ValueError):
    """The upload is not an image we accept; the message is shown to the user."""


def _detect(uploaded):
    try:
        uploaded.seek(0)
        with Image.open(uploaded) as image:
            fmt = image.format
            image.verify()
    except Exception:  # Pillow raises many kinds for garbage; all mean "not an image"
        raise UploadRejected("The file is not an image (PNG, JPEG, GIF or WebP).") from None
    if fmt not in FORMATS:
        raise UploadRejected("Only PNG, JPEG, GIF and WebP images are accepted.")
    return FORMATS[fmt]


class NewFiles:
    """The files one write stores, removed again if the write fails before its commit.

    Use it inside the write's transaction, so it closes before the COMMIT::

        with transaction.atomic(), uploads.NewFiles() as new_files:
            quiz.attachment = uploads.store_image(image, new_files)
            quiz.save()

    An exception in the block (the database refused a statement, or anything
    else) rolls the rows back and removes the files. A failed COMMIT leaves
    them: its outcome is unknown (the answer may be what was lost), and a row
    that did commit must not point at a removed file; an unnamed file is the
    lesser harm.
    """

    def __init__(self):
        self.paths = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            for path in self.paths:
                _remove(path)
        return False


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def store_image(uploaded, new_files=None):
    """Check ``uploaded`` (a Django UploadedFile) and store it; return the new Attachment.

    The file is added to ``new_files`` (a NewFiles) so a failed write removes it.
    """
    if uploaded.size > settings.UPLOAD_MAX_BYTES:
        raise UploadRejected("The image is larger than 2 MB.")
    if uploaded.size == 0:
        raise UploadRejected("The file is empty.")
    ext, mime = _detect(uploaded)
    name = f"{secrets.token_hex(16)}.{ext}"
    root = settings.MEDIA_ROOT
    # Never created here: on a deployed server the media root is a folder of the
    # shared volume, and one made locally while the volume is away would hide
    # uploads from the other servers. /healthz reports such a server as down.
    if not os.path.isdir(root):
        raise UploadRejected("Images cannot be stored right now; please try again later.")
    final = os.path.join(root, name)
    partial = final + ".part"
    uploaded.seek(0)
    try:
        with open(partial, "xb") as out:
            for chunk in uploaded.chunks():
                out.write(chunk)
        os.replace(partial, final)
    except BaseException:
        _remove(partial)
        raise
    if new_files is not None:
        new_files.paths.append(final)
    filename = os.path.basename(uploaded.name or "image")[:255]
    return Attachment.objects.create(name=name, filename=filename, mime=mime)


def edited(current, uploaded, keep, new_files=None):
    """The picture after an edit form: a new upload, the current one kept, or none.

    Raises UploadRejected for a bad upload. Call `discard_replaced` once the
    owner is saved, inside the same transaction.
    """
    if uploaded:
        return store_image(uploaded, new_files)
    return current if keep else None


def discard_replaced(old, new_id):
    """Delete the old picture if the edit replaced or removed it."""
    if old is not None and new_id != old.id:
        delete_attachment(old)


def path_of(name):
    """The file of a stored name, or None for anything that isn't one of our names."""
    if not NAME_RE.match(name):
        return None
    return os.path.join(settings.MEDIA_ROOT, name)


def delete_attachment(attachment):
    """Delete the row now and the file once the transaction commits."""
    if attachment is None:
        return
    path = path_of(attachment.name)
    attachment.delete()

    if path:
        transaction.on_commit(lambda: _remove(path))
