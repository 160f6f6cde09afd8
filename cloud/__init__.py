"""Deployment and promotion: the CloudFormation template (template.yaml), the artifacts it deploys
(artifacts.py), change-set deploys and teardown (deploy.py, stack.py), promotion to AWS (plan.py, image.py,
promote.py; model_packages.py: model versions as a Model Package Group), the thresholds of the alarms a model
update is rolled back on (guardrails.py), and the one maker of host-side AWS clients (aws.py: AwsTarget). The
only package that knows resource names. Emulator differences: EMULATORS.md; promotion: PROMOTION.md."""
