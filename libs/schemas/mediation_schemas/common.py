"""Building blocks shared by several payloads."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .vocab import HealthRight, Motive, Screening


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SealedBlock(Strict):
    """Personal data sealed with AES-256-GCM under the person's own data key.

    Only intake and cases can ask the key vault for the key (``key_id``); once the key
    is destroyed (erasure), every copy of this block, in Kafka or elsewhere, is unreadable.
    """

    key_id: str = Field(description="Id of the person's data key in the key vault.")
    alg: str = Field(default="AES-256-GCM")
    nonce: str = Field(description="Base64 96-bit nonce.")
    ciphertext: str = Field(description="Base64 ciphertext with its 128-bit tag.")


class MotiveItem(Strict):
    """One reason for the referral; `right` or `screening` qualify some codes.

    Free text for `other` is never here: it is sealed with the person's data.
    """

    code: Motive
    right: HealthRight | None = Field(default=None, description="For access_to_rights.")
    screening: Screening | None = Field(default=None, description="For cancer_screening.")


class Problem(Strict):
    """One reason a message was refused: where, which rule, and a French message."""

    field: str = Field(description="Dotted path of the field, e.g. person.birth_date.")
    code: str = Field(description="Machine-readable rule, e.g. missing, invalid_format.")
    message: str = Field(description="Message in French for the sender; never echoes values.")
