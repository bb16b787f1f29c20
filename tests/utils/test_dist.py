"""fewshot_det.utils.dist: one implementation of rank / world size for data and engine."""
import subprocess
import sys

from fewshot_det.utils.dist import dist_info, get_rank, get_world_size, is_main_process


def test_single_process():
    assert dist_info() == (0, 1)
    assert (get_rank(), get_world_size(), is_main_process()) == (0, 1, True)


def test_data_and_engine_share_it():
    from fewshot_det.data import build
    from fewshot_det.engine import comm

    assert build.dist_info is dist_info and comm.get_rank is get_rank


def test_utils_import_without_torch():
    code = ("import sys; import fewshot_det.utils.files, fewshot_det.utils.dist; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
