"""Tag keys every layer shares (GB/T 30428 classes and states)."""

from twin.layer import COMPONENT_CLASSES, COMPONENT_STATES

COMMON_KEYS: dict[str, tuple[str, ...]] = {
    "class": COMPONENT_CLASSES,
    "condition": COMPONENT_STATES,
}
