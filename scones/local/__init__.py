"""What `scones up` starts, supervises and records on this machine.

emulator.py      ministack as a child process on 127.0.0.1, or the emulator AWS_ENDPOINT_URL names
model_server.py  the model server (local_model.serve) as a child process standing in for SageMaker Runtime
supervisor.py    the one child-process supervisor both use: a free port, health checks, clean stops
environment.py   a running local environment (emulator, model server, stack) and stopping it as one
state_file.py    WORKDIR/state.json: what runs and where, so that other terminals find it
connection.py    where a command's AWS calls go: the embedded emulator, AWS_ENDPOINT_URL's, the running
                 `scones up`'s, or AWS itself (--target aws); it hands out the AwsTarget
    watcher.py       `scones up --watch`: saved edits debounced and handed to hot_update.py, which applies each
                     with the least work (UpdateFunctionCode, UpdateStateMachine, a change set, a model reload)
    debugging.py     `scones up --debug FUNCTION`: deploys debug_shim.py into that function (debugpy on 127.0.0.1)"""
