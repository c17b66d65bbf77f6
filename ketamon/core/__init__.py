"""The session core: commands checked against the user's role and the domain's rules, persisted
through ports, and a session state rebuilt by the domain's fold. No Qt, no SQLAlchemy."""
