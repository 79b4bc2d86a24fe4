# Memory (mem_mb, MB) and time limit (runtime, minutes) of each rule, scaled with the
# configuration by halo_ml.job_resources. A rule attaches them with
#     resources: **job_resources("train")
# The GPU request of train and predict is in the workflow profile (profiles/default/), so that
# a local run never asks for one. Both are overridden by --set-resources or a profile's
# set-resources, and rules listed nowhere get the profile's default-resources.

from halo_ml.job_resources import ResourceEstimateError, rule_resources

try:
    RULE_RESOURCES = rule_resources(config)
except ResourceEstimateError as error:
    raise WorkflowError(str(error)) from None


def job_resources(rule_name):
    """Return the resources of ``rule_name`` as keyword arguments for a rule's `resources:`."""
    return RULE_RESOURCES[rule_name]
