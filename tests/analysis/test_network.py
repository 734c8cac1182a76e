"""The street network on small hand-made networks: noding, joining, snapping, and distances
checked against networkx on the same graph with the snapped points spliced into their edges."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import shapely
from shapely.geometry import LineString

from twin.analysis.network import KERB_M, Network, Snapped, points_along, street_network, utm_epsg


def _reference(net: Network, sources: Snapped, targets: Snapped,
               limit: float | None = None) -> list[float]:
    """Each target's distance to its nearest source, by networkx on the spliced graph."""
    points = {("s", i): (int(sources.edge[i]), float(sources.along[i]),
                         float(sources.offset[i])) for i in range(len(sources))}
    points |= {("t", j): (int(targets.edge[j]), float(targets.along[j]),
                          float(targets.offset[j])) for j in range(len(targets))}
    graph = net.to_networkx(points)
    found = nx.multi_source_dijkstra_path_length(
        graph, {("s", i) for i in range(len(sources))}, weight="weight")
    out = [found.get(("t", j), np.inf) for j in range(len(targets))]
    if limit is not None:
        out = [d if d <= limit else np.inf for d in out]
    return out


def _grid(n: int = 4, step: float = 100.0) -> list[LineString]:
    """n horizontal and n vertical streets crossing, each drawn as one line."""
    span = step * (n - 1)
    return ([LineString([(0, i * step), (span, i * step)]) for i in range(n)]
            + [LineString([(i * step, 0), (i * step, span)]) for i in range(n)])


def test_utm_zone_follows_the_data() -> None:
    assert utm_epsg(121.51, 31.195) == 32651  # Shanghai
    assert utm_epsg(-74.0, 40.7) == 32618  # New York
    assert utm_epsg(151.2, -33.9) == 32756  # Sydney, south
    assert utm_epsg(180.0, 0.0) == 32660


def test_crossing_lines_share_nodes_and_edges_have_lengths() -> None:
    net = Network.from_lines(_grid(4))
    assert net.node_count == 16
    assert net.edge_count == 24  # 2 * 4 lines cut into 3 pieces each
    assert np.allclose(net.length, 100.0)
    # a T: a line ending exactly on another splits it
    t = Network.from_lines([LineString([(0, 0), (100, 0)]), LineString([(40, 0), (40, 50)])])
    assert (t.node_count, t.edge_count) == (4, 3)
    assert sorted(np.round(t.length, 6)) == [40.0, 50.0, 60.0]


def test_ends_short_of_a_street_and_passages_at_the_kerb_are_joined() -> None:
    main = LineString([(0, 0), (200, 0)])
    side = LineString([(100, 0.4), (100, 80)])  # stops 0.4 m short of the main street
    kerb = LineString([(150, 10 / 2), (150, 40)])  # a passage from the kerb of a 10 m street
    far = LineString([(20, 10 / 2 + KERB_M + 3), (20, 60)])  # starts beyond the kerb
    net = street_network([main, side], [10.0, 6.0], [kerb, far])
    labels = _components(net)
    ends = net.snap(np.array([100.0, 150.0, 20.0, 0.0]), np.array([80.0, 40.0, 60.0, 0.0]))
    node = [int(net.u[e]) if a < 1e-9 else int(net.v[e])
            for e, a in zip(ends.edge, ends.along, strict=True)]
    assert labels[node[0]] == labels[node[3]]  # the side street meets the main one
    assert labels[node[1]] == labels[node[3]]  # the passage meets it at the kerb
    assert labels[node[2]] != labels[node[3]]  # the far passage does not
    # the side street's 0.4 m gap is bridged: 100 m along the main street, 0.4, then 79.6
    found = net.nearest(net.snap(np.array([0.0]), np.array([0.0])),
                        net.snap(np.array([100.0]), np.array([80.0])))
    assert found.distance[0] == pytest.approx(100 + 0.4 + 79.6)


@pytest.mark.parametrize("lines", [
    _grid(6, 80.0),
    # long straight streets (cut into several index pieces), bends, a loop, a lone far street
    [LineString([(0, 0), (900, 0)]), LineString([(0, 0), (300, 250), (620, 40), (900, 0)]),
     LineString([(400, 0), (450, -60), (500, 0), (400, 0)]),
     LineString([(5000, 5000), (5003, 5000)])],
], ids=["grid", "long-bent-loop-far"])
def test_snapping_finds_the_nearest_point_of_the_nearest_edge(lines: list[LineString]) -> None:
    net = Network.from_lines(lines)
    rng = np.random.default_rng(4)
    x, y = rng.uniform(-200, 1100, 400), rng.uniform(-300, 600, 400)
    snapped = net.snap(x, y)
    points = shapely.points(x, y)
    pieces = net.geoms
    assert shapely.length(pieces).tolist() == pytest.approx(net.length.tolist())
    nearest = shapely.distance(pieces[:, None], points[None, :]).min(axis=0)
    assert snapped.offset.tolist() == pytest.approx(nearest.tolist(), abs=1e-9)
    on = shapely.line_interpolate_point(pieces[snapped.edge], snapped.along)
    assert shapely.distance(on, points).tolist() == pytest.approx(snapped.offset.tolist(),
                                                                  abs=1e-9)
    # points far from everything (the certificate fails; every candidate is measured)
    far = net.snap(np.array([3000.0, -4000.0]), np.array([3000.0, 100.0]))
    assert far.offset.tolist() == pytest.approx(
        shapely.distance(pieces[:, None], shapely.points([3000.0, -4000.0], [3000.0, 100.0])
                         [None, :]).min(axis=0).tolist())


def _components(net: Network) -> np.ndarray:
    from scipy.sparse.csgraph import connected_components

    return connected_components(net.matrix, directed=False)[1]


def test_distances_equal_networkx_on_a_grid_with_points_mid_edge() -> None:
    net = Network.from_lines(_grid(5, 80.0))
    rng = np.random.default_rng(3)
    facilities = net.snap(rng.uniform(-10, 330, 6), rng.uniform(-10, 330, 6))
    buildings = net.snap(rng.uniform(-10, 330, 60), rng.uniform(-10, 330, 60))
    assert np.all(buildings.offset > 0)  # off the streets, snapped mid-edge
    found = net.nearest(facilities, buildings)
    expected = _reference(net, facilities, buildings)
    assert found.distance.tolist() == pytest.approx(expected, rel=1e-12, abs=1e-9)
    # the nearest source named is one at that distance
    for j, s in enumerate(found.source):
        alone = net.nearest(facilities.take([s]), buildings.take([j]))
        assert alone.distance[0] == pytest.approx(found.distance[j], abs=1e-9)
    limited = net.nearest(facilities, buildings, limit=60.0)
    assert limited.distance.tolist() == pytest.approx(_reference(net, facilities, buildings,
                                                                 60.0), abs=1e-9)
    assert np.all((limited.source == -1) == ~np.isfinite(limited.distance))


def test_two_points_on_one_edge_meet_directly_along_it() -> None:
    # a long edge whose ends are far apart by any other way (a detour of 3 x 300 m)
    lines = [LineString([(0, 0), (300, 0)]), LineString([(0, 0), (0, 300)]),
             LineString([(0, 300), (300, 300)]), LineString([(300, 300), (300, 0)])]
    net = Network.from_lines(lines)
    facility = net.snap(np.array([100.0]), np.array([5.0]))
    building = net.snap(np.array([160.0, 40.0]), np.array([-8.0, 3.0]))
    assert facility.edge[0] == building.edge[0] == building.edge[1]
    found = net.nearest(facility, building)
    assert found.distance.tolist() == pytest.approx([5 + 60 + 8, 5 + 60 + 3])
    assert found.distance.tolist() == pytest.approx(_reference(net, facility, building))
    assert found.source.tolist() == [0, 0]
    # two facilities on that edge: each building takes the nearer along it
    two = net.snap(np.array([100.0, 250.0]), np.array([5.0, 2.0]))
    both = net.snap(np.array([160.0, 240.0, 40.0]), np.array([-8.0, -1.0, 3.0]))
    found = net.nearest(two, both)
    assert found.distance.tolist() == pytest.approx([73.0, 13.0, 68.0])
    assert found.source.tolist() == [0, 1, 0]
    assert found.distance.tolist() == pytest.approx(_reference(net, two, both))


def test_parallel_pieces_and_a_loop_agree_with_networkx() -> None:
    lines = [LineString([(0, 0), (100, 0)]),
             LineString([(0, 0), (50, 40), (100, 0)]),  # a longer parallel way
             LineString([(100, 0), (150, 0), (150, 50), (100, 0)]),  # a loop back to its start
             LineString([(100, 0), (200, -50)])]
    net = Network.from_lines(lines)
    rng = np.random.default_rng(11)
    sources = net.snap(rng.uniform(0, 200, 3), rng.uniform(-50, 50, 3))
    targets = net.snap(rng.uniform(0, 200, 40), rng.uniform(-50, 50, 40))
    found = net.nearest(sources, targets)
    assert found.distance.tolist() == pytest.approx(_reference(net, sources, targets),
                                                    rel=1e-12, abs=1e-9)


def test_no_sources_reach_nothing_and_reach_covers_the_edges_within() -> None:
    net = Network.from_lines(_grid(3, 100.0))
    targets = net.snap(np.array([50.0]), np.array([1.0]))
    none = net.nearest(net.snap(np.array([]), np.array([])), targets)
    assert none.distance.tolist() == [np.inf] and none.source.tolist() == [-1]
    # a point on the centre node reaches 60 m along each of its 4 streets
    centre = net.snap(np.array([100.0]), np.array([100.0]))
    assert shapely.length(net.reach(centre, 60.0)) == pytest.approx(4 * 60.0)
    # 2 m off the street, at the middle of an edge: 28 m each way along it
    mid = net.snap(np.array([50.0]), np.array([2.0]))
    assert shapely.length(net.reach(mid, 30.0)) == pytest.approx(56.0)


def _pair_reference(net: Network, sources: Snapped, targets: Snapped, limit: float
                    ) -> dict[tuple[int, int], float]:
    """Every (source, target) pair within ``limit``, by networkx from each source alone."""
    out = {}
    for i in range(len(sources)):
        for j, d in enumerate(_reference(net, sources.take([i]), targets, limit)):
            if np.isfinite(d):
                out[(i, j)] = d
    return out


# Two small networks the distance tests run on: a grid, and parallel pieces (one long and
# straight, one bent), a loop back to its start and a dead end.
NETWORKS = {
    "grid": _grid(7, 60.0),
    "parallel-long-edge-and-loop": [
        LineString([(0, 0), (300, 0)]), LineString([(0, 0), (50, 40), (300, 0)]),
        LineString([(100, 0), (150, 0), (150, 50), (100, 0)]),
        LineString([(100, 0), (200, -50)])],
}


@pytest.mark.parametrize("lines", NETWORKS.values(), ids=NETWORKS.keys())
def test_pairs_within_a_distance_equal_networkx(lines: list[LineString]) -> None:
    net = Network.from_lines(lines)
    rng = np.random.default_rng(5)
    sources = net.snap(rng.uniform(-10, 330, 25), rng.uniform(-60, 330, 25))
    targets = net.snap(rng.uniform(-10, 330, 70), rng.uniform(-60, 330, 70))
    for limit in (40.0, 120.0, 1000.0):
        pairs = net.within(sources, targets, limit)
        found = {(int(s), int(t)): float(d)
                 for s, t, d in zip(pairs.source, pairs.target, pairs.distance, strict=True)}
        expected = _pair_reference(net, sources, targets, limit)
        assert found.keys() == expected.keys(), limit
        for key, d in expected.items():
            assert found[key] == pytest.approx(d, rel=1e-12, abs=1e-9)
        matrix = pairs.matrix()
        assert matrix.shape == (25, 70) and matrix.nnz == len(expected)
        # the nearest of each target agrees with ``nearest``
        nearest = net.nearest(sources, targets, limit)
        for j in range(70):
            row = [d for (_s, t), d in found.items() if t == j]
            assert (min(row) if row else np.inf) == pytest.approx(nearest.distance[j])
    # in batches (a small memory budget) the same pairs come out
    small = net.within(sources, targets, 120.0, max_cells=300)
    whole = net.within(sources, targets, 120.0)
    assert small.source.tolist() == whole.source.tolist()
    assert small.target.tolist() == whole.target.tolist()
    assert small.distance.tolist() == pytest.approx(whole.distance.tolist())


@pytest.mark.parametrize("lines", NETWORKS.values(), ids=NETWORKS.keys())
def test_one_new_point_searched_in_its_disc_equals_networkx(lines: list[LineString]) -> None:
    net = Network.from_lines(lines)
    rng = np.random.default_rng(8)
    x, y = rng.uniform(-10, 370, 80), rng.uniform(-60, 370, 80)
    targets = net.snap(x, y)
    for i in range(12):
        at = np.array([rng.uniform(-10, 370), rng.uniform(-60, 370)])
        source = net.snap(at[:1], at[1:])
        for limit in (30.0, 90.0, 250.0):
            found = net.from_one(source, at, targets, limit)
            expected = _reference(net, source, targets, limit)
            assert found.tolist() == pytest.approx(expected, rel=1e-12, abs=1e-9), (i, limit)
    assert np.isfinite(found).any() and not np.isfinite(found).all()  # the cases discriminate


def test_pairs_on_one_edge_meet_along_it_and_points_along_lines() -> None:
    lines = [LineString([(0, 0), (300, 0)]), LineString([(0, 0), (0, 300)]),
             LineString([(0, 300), (300, 300)]), LineString([(300, 300), (300, 0)])]
    net = Network.from_lines(lines)
    sources = net.snap(np.array([100.0, 250.0]), np.array([5.0, 2.0]))
    targets = net.snap(np.array([160.0, 240.0]), np.array([-8.0, -1.0]))
    pairs = net.within(sources, targets, 80.0)
    # 5 + 60 + 8 and 2 + 10 + 1 along the edge; the others are 100 m and 146 m apart
    assert list(zip(pairs.source.tolist(), pairs.target.tolist(), strict=True)) == [
        (0, 0), (1, 1)]
    assert pairs.distance.tolist() == pytest.approx([73.0, 13.0])
    assert net.within(sources, targets, 100.0).distance.tolist() == pytest.approx(
        [73.0, 100.0, 13.0])
    x, y = points_along([LineString([(0, 0), (100, 0)]), LineString([(0, 0), (0, 10)])], 50.0)
    assert x.tolist() == pytest.approx([25.0, 75.0, 0.0])
    assert y.tolist() == pytest.approx([0.0, 0.0, 5.0])
