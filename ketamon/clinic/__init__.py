"""The clinic: many ketamon stations on one PostgreSQL (issue 14), without Qt.

* :mod:`ketamon.clinic.registry`: stations register, send a heartbeat (with their clock's offset
  from the server's) and say which chairs they run, each chair's session and next item due;
* :mod:`ketamon.clinic.station`: a headless station (``ketamon station``), the app's pipeline,
  alarm engine, prompts and writer with no window;
* :mod:`ketamon.clinic.feed`: what a central view shows, kept current from ``LISTEN
  ketamon_clinic`` (published by database triggers at commit; migration 0007) and the tables,
  reconnecting by itself.
"""
