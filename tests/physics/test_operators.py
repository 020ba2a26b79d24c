"""Every registered operator: adjointness, gradient = adjoint, linearity, shape errors, device moves."""

from __future__ import annotations

import pytest
import torch

from inrecon.errors import ShapeError
from tests.operator_checks import adjoint_error, gradient_error, linearity_error, random_like
from tests.registry import all_cases

CASES = all_cases()


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request):
    return request.param


def test_adjoint(case, gen):
    op = case.factory()
    for _ in range(3):
        x = random_like(case.domain, case.domain_dtype, gen)
        y = random_like(case.range, case.range_dtype, gen)
        assert adjoint_error(op, x, y) < case.tol


def test_gradient_is_adjoint(case, gen):
    op = case.factory()
    x = random_like(case.domain, case.domain_dtype, gen)
    y = random_like(case.range, case.range_dtype, gen)
    assert gradient_error(op, x, y) < case.tol * 10


def test_linearity(case, gen):
    op = case.factory()
    x1 = random_like(case.domain, case.domain_dtype, gen)
    x2 = random_like(case.domain, case.domain_dtype, gen)
    assert linearity_error(op, x1, x2) < case.tol * 10


def test_output_shapes(case, gen):
    op = case.factory()
    x = random_like(case.domain, case.domain_dtype, gen)
    y = op(x)
    assert tuple(y.shape) == case.range
    assert y.dtype == case.range_dtype
    assert tuple(op.adjoint(random_like(case.range, case.range_dtype, gen)).shape) == case.domain


def test_wrong_shape_is_rejected(case, gen):
    op = case.factory()
    bad = tuple(s + 1 for s in case.domain)
    with pytest.raises(ShapeError):
        op(random_like(bad, case.domain_dtype, gen))


def test_adjoint_operator_property(case, gen):
    op = case.factory()
    y = random_like(case.range, case.range_dtype, gen)
    torch.testing.assert_close(op.H(y), op.adjoint(y))
