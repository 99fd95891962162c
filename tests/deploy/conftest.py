"""What the deployment files must agree on: the image's user and volumes, read from the
Dockerfile itself."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from tests.conftest import ROOT


@dataclass(frozen=True)
class ImageFacts:
    uid: int
    gid: int
    volumes: frozenset[str]
    port: int


def image_facts() -> ImageFacts:
    dockerfile = (ROOT / "Dockerfile").read_text()
    final_stage = dockerfile.rsplit("\nFROM ", 1)[1]
    user = re.search(r"^USER (\d+):(\d+)$", final_stage, re.MULTILINE)
    volume = re.search(r"^VOLUME (\[.*\])$", final_stage, re.MULTILINE)
    port = re.search(r"^EXPOSE (\d+)$", final_stage, re.MULTILINE)
    assert user, "the Dockerfile's last stage sets USER uid:gid"
    assert volume, "the Dockerfile's last stage sets VOLUME"
    assert port, "the Dockerfile's last stage sets EXPOSE"
    return ImageFacts(
        uid=int(user[1]),
        gid=int(user[2]),
        volumes=frozenset(json.loads(volume[1])),
        port=int(port[1]),
    )
