"""Presenters: one QObject per chair (or screen) between the widgets and the Qt-free core.

They run commands off the UI thread, hand widgets immutable snapshots, and emit typed signals.
Widgets talk to presenters only: never to a port, a database session or the acquisition.
"""
