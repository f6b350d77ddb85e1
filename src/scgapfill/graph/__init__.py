"""The cell graph: neighbours, random walks, the context channel's and the output's smoothing."""
