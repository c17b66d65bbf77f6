"""Session models: the state behind a chair's screen (QtCore only, no widgets, no database).

Widgets call these models; the models persist through an injected store whose implementation
(``ketamon.services.WriterSessionStore``) is wired by the app.
"""

from __future__ import annotations
