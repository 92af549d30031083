"""Settings, logging, errors and security shared by the API and the workers."""
