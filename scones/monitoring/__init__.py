"""What the endpoint and the workflow did, for a person to read.

report.py  a batch's report (accuracy, routed precision and coverage, confusion, latency) and the summary
           of captured inferences, as text, JSON and pictures
page.py    the monitoring page of `scones monitor`: captures drawn over time, lowest-confidence inputs, drift
drift.py   drift detection: does a window of served inferences still look like the model's baseline?
compare.py champion against challenger (a shadow variant) on the same requests"""
