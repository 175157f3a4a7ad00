"""Helpers shared by tests/pycaffe_py: where things are, running netrun, temp dirs."""

import os
import shutil
import subprocess
import tempfile
import unittest

NETRUN = os.environ.get('NETRUN', '')
SOURCE_DIR = os.environ.get('NR_SOURCE_DIR', os.path.join(os.path.dirname(__file__), '..', '..'))
BUILD_DIR = os.environ.get('NR_BUILD_DIR', os.path.join(SOURCE_DIR, 'build'))
CAFFE_DATA = os.environ.get('NR_CAFFE_DATA', os.path.join(SOURCE_DIR, 'tests', 'data', 'caffe'))


def net_prototxts():
    """Every net prototxt the project carries (Caffe's, in tests/data/caffe, and the
    examples'), solvers excluded."""
    found = []
    for root in (CAFFE_DATA, os.path.join(SOURCE_DIR, 'examples')):
        for cwd, _, files in os.walk(root):
            found += [os.path.join(cwd, f) for f in files
                      if f.endswith('.prototxt') and 'solver' not in f]
    return sorted(found)


def run_netrun(*args, cwd=None, timeout=120):
    """(exit status, stdout, stderr) of `netrun args...`."""
    if not NETRUN:
        raise unittest.SkipTest('NETRUN is not set (run under ctest)')
    p = subprocess.run([NETRUN] + list(args), cwd=cwd, capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


class TempDirTest(unittest.TestCase):
    """A test case with self.dir, a temporary directory removed afterwards."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='pycaffe-test-')
        self.addCleanup(shutil.rmtree, self.dir, True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, name, text):
        with open(self.path(name), 'w') as f:
            f.write(text)
        return self.path(name)
