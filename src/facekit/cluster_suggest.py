"""Name suggestions for clusters: the known people of a database each cluster resembles.

Used by ``facekit cluster --suggest``. Library code: no printing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cluster import ClusterResult
    from .database import Database
    from .types import Embeddings

__all__ = ["add_suggestions"]


def add_suggestions(
    result: ClusterResult, embeddings: Embeddings, db: Database, top_k: int = 3
) -> None:
    """Fill each ``cluster.suggestions`` of ``result`` in place.

    The candidates are the ``top_k`` people nearest to the cluster's centroid (with their
    confidence), then any other person some member face is named as; each entry counts the
    member faces named as that person (``votes``, ``vote_share`` of the cluster's size).

    Args:
        result: clusters of ``embeddings`` (:func:`facekit.cluster.cluster_faces`).
        embeddings: the clustered faces, with every model of ``db``.
        db: the database whose people are suggested.
        top_k: candidates taken from the centroid's match.
    """
    from .cluster import centroid
    from .identify import Identifier

    ident = Identifier(db, top_k=top_k)
    for c in result.clusters:
        sub = embeddings[c.members]
        cen = ident.match(centroid(sub))[0]
        votes: dict[str, int] = {}
        for m in ident.match(sub):
            if m.identity is not None:
                votes[m.identity.person] = votes.get(m.identity.person, 0) + 1
        out: list[dict[str, Any]] = []
        for cand in cen.candidates:
            out.append(
                {
                    "person": cand.person,
                    "name": cand.name,
                    "confidence": round(float(cand.confidence), 1),
                    "votes": votes.pop(cand.person, 0),
                }
            )
        for person, n in sorted(votes.items(), key=lambda kv: -kv[1]):
            p = db.persons.get(person)
            out.append(
                {"person": person, "name": p.name if p else None, "confidence": None, "votes": n}
            )
        for s in out:
            s["vote_share"] = round(s["votes"] / c.size, 3)
        c.suggestions = out
