"""Documents ketamon writes from the record (PDF and printable pages): Qt's QtGui only, no
widgets and no database; callers pass in what the core built."""

#: export formats and their file extensions
FORMATS = {"pdf": "pdf", "csv": "zip", "json": "json", "fhir": "json"}
