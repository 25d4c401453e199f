"""A payload that kills its interpreter, to test that a pilot's death fails only its job."""

import os


def main(argv: list[str]) -> int:
    os._exit(3)
