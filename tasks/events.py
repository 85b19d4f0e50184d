"""The Prefect events of the closed loop: new SA-1B data announces itself to retraining.

Retraining is triggered by the `autolabel.sa1b.landed` event, whose payload names the URL of the
new shards (the `retrain-sam` deployment's trigger reads `event.payload.url`).
"""

import os

from prefect.events import emit_event

SA1B_EVENT = "autolabel.sa1b.landed"


def announce_sa1b(url: str, *, shards: int, images: int) -> bool:
    """Emit the new-data event for `url`; False (and nothing sent) without a Prefect server."""
    if not os.environ.get("PREFECT_API_URL"):
        return False
    emit_event(
        event=SA1B_EVENT,
        resource={"prefect.resource.id": f"autolabel.sa1b.{url}", "autolabel.url": url},
        payload={"url": url, "shards": shards, "images": images},
    )
    return True
