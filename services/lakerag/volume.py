"""A local volume that cannot take a write, whatever the file: the errnos every writer that says so
checks (the model export's stage in the images copies this module)."""

from __future__ import annotations

import errno

VOLUME_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})  # full, over a quota or a size limit
WRITE_ERRNOS = VOLUME_FULL_ERRNOS | {errno.EROFS}  # ... or read-only
