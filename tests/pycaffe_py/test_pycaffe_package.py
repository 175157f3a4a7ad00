"""The caffe package as a whole: what `import caffe` loads, the lazy pycaffe names, the
stand-ins for the C extension's names, the pycaffe.py hook, layer_type_list() against the
engine, the staged files and `cmake --install`."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

import pyc_util

PYTHON = sys.executable
STAGED = os.path.join(pyc_util.BUILD_DIR, 'python')
SOURCE = os.path.join(pyc_util.SOURCE_DIR, 'python')
HEAVY = ('google.protobuf', 'skimage', 'pydot', 'scipy')


def python(code, pythonpath, cwd=None):
    """(status, stdout, stderr) of Debian's python3 running code with PYTHONPATH."""
    env = dict(os.environ, PYTHONPATH=pythonpath)
    p = subprocess.run([PYTHON, '-B', '-c', textwrap.dedent(code)], env=env, cwd=cwd,
                       capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


class ImportCost(unittest.TestCase):
    """A worker's `import caffe` must not load protobuf, scikit-image, pydot or SciPy."""

    def check_light(self, pythonpath):
        st, out, err = python('''
            import sys, caffe
            print(caffe.__file__)
            print(' '.join(m for m in %r if m in sys.modules))
            ''' % (HEAVY,), pythonpath)
        self.assertEqual(st, 0, err)
        path, heavy = (out.split('\n') + [''])[:2]
        self.assertTrue(path.startswith(pythonpath), path)
        self.assertEqual(heavy, '', 'import caffe loaded ' + heavy)

    def test_staged_package_is_light(self):
        self.check_light(STAGED)

    def test_source_package_is_light(self):
        # what netrun's workers import (worker/CMakeLists.txt: NR_PYTHON_PKG_DIR)
        self.check_light(SOURCE)

    def test_lazy_names_load_on_use(self):
        st, out, err = python('''
            import sys, caffe
            n = caffe.NetSpec()
            print('google.protobuf' in sys.modules, 'skimage' in sys.modules)
            caffe.io.oversample
            print('skimage' in sys.modules)
            ''', STAGED)
        self.assertEqual(st, 0, err)
        self.assertEqual(out.split(), ['True', 'False', 'False'])


class Names(unittest.TestCase):
    def setUp(self):
        import caffe
        self.caffe = caffe

    def test_pure_python_names(self):
        caffe = self.caffe
        from caffe import layers as L, params as P, NetSpec, to_proto, io, proto
        import caffe.draw
        import caffe.coord_map
        self.assertIs(caffe.layers, L)
        self.assertIs(caffe.params, P)
        self.assertIs(caffe.NetSpec, caffe.net_spec.NetSpec)
        self.assertIs(caffe.to_proto, caffe.net_spec.to_proto)
        self.assertIs(caffe.io, io)
        self.assertIs(caffe.proto, proto)
        self.assertTrue(callable(caffe.draw.draw_net))
        self.assertTrue(callable(caffe.coord_map.crop))
        for name in ('io', 'proto', 'NetSpec', 'layers', 'params', 'to_proto', 'Classifier',
                     'Detector', 'draw', 'coord_map', 'Layer', 'Net'):
            self.assertIn(name, dir(caffe))

    def test_worker_side_api_kept(self):
        caffe = self.caffe
        self.assertEqual((caffe.TRAIN, caffe.TEST), (0, 1))
        self.assertEqual(caffe.__version__, '1.0.0')
        for name in ('Layer', 'Blob', 'get_worker_info', 'set_mode_cpu', 'set_mode_gpu',
                     'set_device', 'set_random_seed', 'solver_count', 'solver_rank',
                     'set_solver_count', 'set_solver_rank', 'has_nccl', 'init_log', 'log'):
            self.assertTrue(callable(getattr(caffe, name)), name)
        self.assertIsNone(caffe.get_worker_info())
        from caffe.proto import caffe_pb2
        self.assertEqual((caffe_pb2.TRAIN, caffe_pb2.TEST), (caffe.TRAIN, caffe.TEST))

    def test_unknown_name(self):
        with self.assertRaisesRegex(AttributeError, "module 'caffe' has no attribute 'Nett'"):
            self.caffe.Nett
        self.assertFalse(hasattr(self.caffe, 'Nett'))

    def test_extension_names_say_what_is_missing(self):
        # the source tree has no C extension (as a worker sees it): the stand-ins say so
        st, out, err = python('''
            import caffe
            for name in ('Net', 'SGDSolver', 'AdamSolver', 'get_solver', 'NCCL', 'Timer',
                         'Classifier', 'Detector'):
                try:
                    getattr(caffe, name)('net.prototxt', caffe.TEST)
                except NotImplementedError as e:
                    print(name, e)
            try:
                import caffe.classifier
            except ImportError as e:
                print('classifier', e)
            ''', SOURCE)
        self.assertEqual(st, 0, err)
        lines = out.strip().split('\n')
        self.assertEqual(len(lines), 9, out)
        for line in lines[:8]:
            name = line.split()[0]
            self.assertIn("caffe.%s comes from netrun's C extension" % name, line)
        self.assertIn('subclasses caffe.Net', lines[8])

    def test_extension_names_work_when_built(self):
        caffe = self.caffe
        for name in ('Net', 'SGDSolver', 'AdamSolver', 'get_solver'):
            self.assertFalse(getattr(getattr(caffe, name), '_nr_missing', False), name)
            with self.assertRaisesRegex(OSError, "cannot open 'no-such.prototxt'"):
                getattr(caffe, name)('no-such.prototxt') if name != 'Net' else \
                    caffe.Net('no-such.prototxt', caffe.TEST)

    def test_worker_message(self):
        st, out, err = python('''
            import caffe
            caffe._in_worker = True
            try:
                caffe.Net('x', caffe.TEST)
            except NotImplementedError as e:
                print(e)
            ''', SOURCE)
        self.assertEqual(st, 0, err)
        self.assertIn('not available inside a netrun Python layer', out)


class LayerTypes(unittest.TestCase):
    def test_engine_types(self):
        import caffe
        types = caffe.layer_type_list()
        for t in ('Data', 'Convolution', 'InnerProduct', 'Python', 'Pooling', 'ReLU'):
            self.assertIn(t, types)
        self.assertEqual(types, sorted(types))

    def test_same_list_as_netrun(self):
        # netrun names every type it knows when a net uses an unknown one
        import caffe
        with tempfile.NamedTemporaryFile('w', suffix='.prototxt') as f:
            f.write('layer { name: "x" type: "NoSuchType" top: "x" }\n')
            f.flush()
            st, out, err = pyc_util.run_netrun('check', '--model', f.name)
        self.assertNotEqual(st, 0)
        m = re.search(r'known types: ([A-Za-z0-9, ]+)', err + out)
        self.assertIsNotNone(m, err)
        engine = set(m.group(1).split(', '))
        self.assertEqual(set(caffe.layer_type_list()) - {'Python'}, engine - {'Python'})


class PycaffeHook(pyc_util.TempDirTest):
    """caffe/pycaffe.py (the C extension's Python half) replaces the stand-ins."""

    def package_with(self, pycaffe_source):
        # the staged package without its C extension: pycaffe_source stands in for it
        shutil.copytree(os.path.join(STAGED, 'caffe'), self.path('caffe'),
                        ignore=shutil.ignore_patterns('__pycache__', '_caffe*.so'))
        self.write('caffe/pycaffe.py', textwrap.dedent(pycaffe_source))
        return self.dir

    def test_exports_replace_stand_ins(self):
        d = self.package_with('''
            __all__ = ['Net', 'layer_type_list']
            class Net(object):
                def __init__(self, *args):
                    self.args = args
                    self.inputs = ['data']
                    self.outputs = ['prob']
            def layer_type_list():
                return ['FromExtension']
            ''')
        st, out, err = python('''
            import caffe
            print(caffe.Net.__module__, caffe.layer_type_list())
            print(issubclass(caffe.Classifier, caffe.Net), caffe.SGDSolver.__name__)
            ''', d)
        self.assertEqual(st, 0, err)
        self.assertEqual(out.split('\n')[:2],
                         ["caffe.pycaffe ['FromExtension']", 'True SGDSolver'])

    def test_missing_extension_keeps_stand_ins(self):
        d = self.package_with('from ._caffe import Net\n__all__ = ["Net"]\n')
        st, out, err = python('import caffe; print(caffe.Net._nr_missing)', d)
        self.assertEqual((st, out.strip()), (0, 'True'), err)

    def test_other_import_errors_surface(self):
        d = self.package_with('import no_such_module_here\n')
        st, out, err = python('import caffe', d)
        self.assertNotEqual(st, 0)
        self.assertIn("No module named 'no_such_module_here'", err)


class Staging(unittest.TestCase):
    def test_every_module_staged(self):
        src = os.path.join(SOURCE, 'caffe')
        for f in os.listdir(src):
            if f.endswith('.py'):
                with open(os.path.join(src, f)) as a, \
                        open(os.path.join(STAGED, 'caffe', f)) as b:
                    self.assertEqual(a.read(), b.read(), f + ' differs from its staged copy')
        for f in ('proto/__init__.py', 'proto/caffe_pb2.py', '_layer_types.py'):
            self.assertTrue(os.path.isfile(os.path.join(STAGED, 'caffe', f)), f)


class Install(pyc_util.TempDirTest):
    def test_install_component(self):
        cmake = os.environ.get('CMAKE_COMMAND', 'cmake')
        p = subprocess.run([cmake, '--install', pyc_util.BUILD_DIR, '--prefix', self.dir,
                            '--component', 'pycaffe'], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        # lib/python3.X/dist-packages for /usr/local, lib/python3/dist-packages for /usr
        inits = [cwd for cwd, _, files in os.walk(self.dir)
                 if cwd.endswith('/caffe') and '__init__.py' in files]
        self.assertEqual(len(inits), 1, inits)
        site = os.path.dirname(inits[0])
        self.assertRegex(site[len(self.dir):], r'^/lib/python3(\.\d+)?/dist-packages$')
        for f in ('__init__.py', 'io.py', 'net_spec.py', 'draw.py', 'coord_map.py',
                  'classifier.py', 'detector.py', 'proto/caffe_pb2.py', '_layer_types.py'):
            self.assertTrue(os.path.isfile(os.path.join(site, 'caffe', f)), f)
        self.assertFalse(os.path.exists(os.path.join(site, 'caffe', '__pycache__')))
        st, out, err = python('''
            import caffe
            from caffe.proto import caffe_pb2
            n = caffe.NetSpec()
            n.data = caffe.layers.Input(shape=dict(dim=[1, 2]))
            print(caffe.__file__)
            print(n.to_proto().layer[0].input_param.shape[0].dim)
            print('Convolution' in caffe.layer_type_list())
            ''', site, cwd=self.dir)
        self.assertEqual(st, 0, err)
        lines = out.split('\n')
        self.assertEqual(lines[0], os.path.join(site, 'caffe', '__init__.py'))
        self.assertEqual(lines[1:3], ['[1, 2]', 'True'])


if __name__ == '__main__':
    unittest.main()
