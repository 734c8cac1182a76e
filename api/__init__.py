"""The HTTP face of Twin: FastAPI routes, auth and error shapes; the domain lives in twin/."""
