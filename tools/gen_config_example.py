"""Write config.example.toml: the template `hamustro config init` writes, with example values.

The key docs live in the code (config.KEYS and configfile.NOTES); tests/test_config_cmd.py
fails when config.example.toml no longer matches them. Run: python tools/gen_config_example.py
"""

from pathlib import Path

from hamustro_cli.configfile import example

(Path(__file__).resolve().parent.parent / "config.example.toml").write_text(example())
