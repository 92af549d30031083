"""RQ workers: the encode job function and the worker process that runs it."""
