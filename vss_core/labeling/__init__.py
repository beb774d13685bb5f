"""Labels from neighbours: search and votes, predict, load, decisions with their audit, exemplar review, label sheets."""
