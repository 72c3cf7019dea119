"""make_mesh / parse_mesh_spec on the 8 fake CPU devices."""

import jax
import pytest

from rljax.parallel import MESH_AXES, auto_mesh_shape, make_mesh, parse_mesh_spec


@pytest.mark.parametrize(
    "spec,want",
    [
        ("data=2,fsdp=2,tensor=2", {"data": 2, "fsdp": 2, "tensor": 2}),
        ("fsdp=4, tensor=2", {"data": 1, "fsdp": 4, "tensor": 2}),
        ("data=8", {"data": 8, "fsdp": 1, "tensor": 1}),
        ({"tensor": 8}, {"data": 1, "fsdp": 1, "tensor": 8}),
    ],
)
def test_make_mesh_from_spec(spec, want):
    mesh = make_mesh(spec)
    assert mesh.axis_names == MESH_AXES
    assert dict(mesh.shape) == want
    assert sorted(d.id for d in mesh.devices.flat) == list(range(8))
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)


def test_auto_mesh_is_data_over_processes_and_fsdp_within():
    assert dict(make_mesh("auto").shape) == {"data": 1, "fsdp": 8, "tensor": 1}
    assert auto_mesh_shape(16, 4) == {"data": 4, "fsdp": 4, "tensor": 1}
    with pytest.raises(ValueError, match="6 devices cannot be split evenly over 4 processes"):
        auto_mesh_shape(6, 4)


def test_make_mesh_on_a_device_subset():
    devices = jax.devices()[2:6]
    mesh = make_mesh("data=2,tensor=2", devices=devices)
    assert dict(mesh.shape) == {"data": 2, "fsdp": 1, "tensor": 2}
    assert {d.id for d in mesh.devices.flat} == {2, 3, 4, 5}


@pytest.mark.parametrize(
    "spec,match",
    [
        ("data=3", r"needs 3 devices but 8 are available"),
        ("data=2,fsdp=2,tensor=4", r"needs 16 devices but 8 are available"),
        ("data=2,expert=4", r"unknown axes \['expert'\]"),
        ("data:2", r"item 'data:2' is not of the form axis=size"),
        ("data=two", r"is not of the form axis=size"),
        ("data=0,fsdp=8", r"axis 'data' has size 0; expected a positive int"),
        ("data=2,data=4", r"names axis 'data' twice"),
        ({"fsdp": 2.5}, r"axis 'fsdp' has size 2.5"),
        (8, r"must be a str or a dict"),
    ],
)
def test_bad_specs_raise_clear_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        make_mesh(spec)


def test_parse_mesh_spec_fills_missing_axes_with_one():
    assert parse_mesh_spec("tensor=4") == {"data": 1, "fsdp": 1, "tensor": 4}
