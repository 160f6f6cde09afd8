"""The console: a local web page where you watch the workflow run (`scones console`, also started by `scones up`
and `scones demo --keep-running`). Served on 127.0.0.1 only, by Starlette on uvicorn as the model server is.

- server.py: runs it (uvicorn in a thread, a free port of 127.0.0.1) for one deployed stack.
- app.py: the routes, the Host check (DNS rebinding), the per-console token of the write actions (CSRF), the
  security headers; templates/ (Jinja2, autoescaped) and static/ (the one stylesheet and script).
- views.py: what each page shows: the executions list (filters, counts) and one execution.
- store.py: every AWS call (through the one AwsTarget, cloud/aws.py): reads made only when a page asks (the list
  from ListExecutions at once, each execution described behind it, once it has ended), and
  the three writes (upload an image, start an execution, run a failed one again).
- graph.py: the graph of the deployed definition, laid out by grandalf.
- history.py: an execution's path through that graph, from its event history.
- monitoring.py: `scones monitor`'s report, drawn again on request.
"""
