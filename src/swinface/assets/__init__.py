"""Small files shipped with the package."""

from pathlib import Path

SAMPLE_PHOTO = Path(__file__).with_name("astronaut.jpg")
