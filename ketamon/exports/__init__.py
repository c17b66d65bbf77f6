"""Documents ketamon writes from the record (PDF and printable pages): Qt's QtGui only, no
widgets and no database; callers pass in what the core built."""
