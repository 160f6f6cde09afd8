"""Running someone else's solution of the workflow, as written for the course on AWS: their Lambda sources and
the state machine they exported, in the environment `scones up` runs (`scones solution run`).

- sources.py: the Lambda sources given (one file with several handlers, or a file or folder per function), the
  handlers found in them, and their zips.
- definition.py: the exported definition: its Lambda tasks in the order of the path, which source each one runs
  (by function name, handler name, order, or the user's --map), the definition with the ARNs rewritten, and the
  JSONPath selections AWS would fail on.
- traps.py: what works on the emulator but not on AWS, or fails here for a reason the error hides, found in the
  sources and the definition, each with what AWS would do and the one-line fix.
- runner.py: the whole run: read and check, create the functions and the state machine in the environment
  (cloud/solution.py, which names them), one execution per input, each one's path read.
- trace.py: an execution's path read from its history, every state's input and output, and its failure
  explained.
"""
