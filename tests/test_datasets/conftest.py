"""Fixtures of the dataset tests: tiny generated COCO-format data, and a copy to damage."""
import shutil

import pytest

from product_helpers import tiny_coco


@pytest.fixture(scope='module')
def coco_src(tmp_path_factory):
    """product_helpers.tiny_coco data (4 train, 2 val images), shared by a module."""
    return tiny_coco(str(tmp_path_factory.mktemp('coco')))


@pytest.fixture
def coco(coco_src, tmp_path):
    """A copy of ``coco_src`` to damage."""
    return shutil.copytree(coco_src, str(tmp_path / 'coco'))
