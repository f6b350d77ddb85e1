"""Project settings. https://docs.kedro.org/en/stable/kedro_project_setup/settings.html"""

from kedro.config import OmegaConfigLoader

from scgapfill.glue import quiet
from scgapfill.glue.hooks import ParameterValidationHook, RunRecordHook

# First, before Kedro loads its plugins (kedro-mlflow warns as it is imported).
quiet.install()

HOOKS = (ParameterValidationHook(), RunRecordHook())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**"]},
}
