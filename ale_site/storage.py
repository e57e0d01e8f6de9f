"""Static files storage for production: WhiteNoise's compressed manifest storage."""

from __future__ import annotations

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    """Hashed, compressed static files, without rewriting source-map comments.

    The vendored xterm.js files end with `//# sourceMappingURL=...` for maps that are not
    shipped (the browser only asks for them with its developer tools open). Django's manifest
    storage rewrites those references to hashed names and fails on a missing map, which would
    fail `collectstatic` and so the image build. The url() and @import references of CSS are
    still rewritten: those files are needed by the pages.
    """

    patterns = tuple(
        (extension, tuple(pattern for pattern in rules if "sourceMappingURL" not in str(pattern)))
        for extension, rules in CompressedManifestStaticFilesStorage.patterns
        if any("sourceMappingURL" not in str(pattern) for pattern in rules)
    )
