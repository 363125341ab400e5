"""External sinks: after the serve gate passes, each product is copied to the sinks its spec names.

A sink (``exports`` of a product in the dataset spec: name, url, jurisdiction) is a destination outside
the chain, a partner office's folder or bucket. The serve gate has already checked that every sink's
jurisdiction may receive the product's level (``governance.check_product``): a sink it may not go to
refuses the whole batch, so nothing is published and nothing is exported. Here the allowed copies are
made, each atomically (see :mod:`chaintrace_chain.storage`), at ``<sink url>/<product>.parquet``; the
serve gate's lineage shows each as an output dataset with a ``destination`` facet (kind
``externalSink``, name, jurisdiction).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from chaintrace_chain.storage import StorageError, copy_atomic

if TYPE_CHECKING:
    from chaintrace_chain.spec import DatasetSpec
    from chaintrace_chain.zones import Zones


class ExportError(RuntimeError):
    """A copy to an external sink that failed; the message names the product, the sink and why."""


@dataclass(frozen=True)
class ExportRecord:
    """One copy made: what the gate report keeps and the lineage shows."""

    product: str
    sink: str
    jurisdiction: str
    url: str  # the sink's folder, resolved
    file: str  # the copy: absolute path (local) or URL

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def export_products(spec: DatasetSpec, published: dict[str, str], zones: Zones) -> list[ExportRecord]:
    """Copy every published product to each of its sinks; returns the copies made, in spec order."""
    made: list[ExportRecord] = []
    root = str(zones.root)
    for product in spec.products:
        if product.name not in published or not product.exports:
            continue
        source = zones.locate(published[product.name])
        for sink in product.exports:
            folder = sink.resolved_url(root)
            try:
                target = zones.locate(folder.rstrip("/") + f"/{product.name}.parquet")
                copy_atomic(source, target)
            except (OSError, StorageError, ValueError) as exc:
                raise ExportError(
                    f"{spec.name}: product {product.name} could not be exported to {sink.name} "
                    f"({folder}): {type(exc).__name__}: {exc}"
                ) from exc
            made.append(ExportRecord(product.name, sink.name, sink.jurisdiction, folder, str(target)))
    return made
