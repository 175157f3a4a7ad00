"""netrun plot: training loss and test outputs against iterations, from a netrun (or Caffe)
training log. Reads the same lines Caffe's tools/extra/parse_log.py reads:

    Iteration N (... iter/s, ...), loss = L
    Iteration N, Testing net (#k)
        Test net output #i: name = v ...

Usage: python3 netrun_plot.py LOG [-o curves.png] [--test-output accuracy]
"""
import argparse
import re
import sys

TRAIN_RE = re.compile(r'Iteration (\d+) \(.*\), loss = ([-+.\deE]+|nan|inf)')
TEST_START_RE = re.compile(r'Iteration (\d+), Testing net \(#(\d+)\)')
TEST_OUT_RE = re.compile(r'Test net output #(\d+): (\S+) = ([-+.\deE]+|nan|inf)')


def parse(lines):
    train = []
    tests = {}  # (net, name) -> [(iter, value)]
    current = None
    for line in lines:
        m = TRAIN_RE.search(line)
        if m:
            train.append((int(m.group(1)), float(m.group(2))))
            continue
        m = TEST_START_RE.search(line)
        if m:
            current = (int(m.group(1)), int(m.group(2)))
            continue
        m = TEST_OUT_RE.search(line)
        if m and current is not None:
            key = (current[1], m.group(2))
            tests.setdefault(key, []).append((current[0], float(m.group(3))))
    return train, tests


def main(argv):
    ap = argparse.ArgumentParser(prog='netrun plot', description=__doc__.split('\n')[0])
    ap.add_argument('log')
    ap.add_argument('-o', '--output', default='curves.png')
    ap.add_argument('--test-output', default='accuracy',
                    help='name of the test net output to plot (default: accuracy)')
    args = ap.parse_args(argv)
    try:
        with open(args.log, errors='replace') as f:
            train, tests = parse(f)
    except OSError as e:
        print('netrun: error: plot: cannot read %s: %s' % (args.log, e.strerror), file=sys.stderr)
        return 1
    if not train and not tests:
        print('netrun: error: plot: %s has no training or test lines' % args.log, file=sys.stderr)
        return 1
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        print('netrun: error: plot needs matplotlib: apt-get install python3-matplotlib',
              file=sys.stderr)
        return 1
    series = [(k, v) for k, v in sorted(tests.items()) if k[1] == args.test_output]
    if tests and not series:
        names = sorted({name for _, name in tests})
        print('netrun: error: plot: %s has no test output named %r (it has: %s); choose one '
              'with --test-output' % (args.log, args.test_output, ', '.join(names)),
              file=sys.stderr)
        return 1
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if train:
        ax.plot([i for i, _ in train], [l for _, l in train], color='tab:blue', lw=1,
                label='training loss')
    ax.set_xlabel('iteration')
    ax.set_ylabel('training loss', color='tab:blue')
    if series:
        ax2 = ax.twinx()
        for (net, name), pts in series:
            ax2.plot([i for i, _ in pts], [v for _, v in pts], 'o-', color='tab:orange',
                     label='test net #%d %s' % (net, name))
            # right-aligned at the last point, so the frame never cuts the label
            ax2.annotate('%.4f' % pts[-1][1], pts[-1], textcoords='offset points',
                         xytext=(-4, 6), ha='right', color='tab:orange')
        ax2.set_ylabel('test ' + args.test_output, color='tab:orange')
        lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
        ax.legend(lines, [l.get_label() for l in lines], loc='center right')
    ax.set_title(args.log)
    fig.tight_layout()
    try:
        fig.savefig(args.output, dpi=110)
    except (OSError, ValueError) as e:
        print('netrun: error: plot: cannot write %s: %s'
              % (args.output, getattr(e, 'strerror', None) or e), file=sys.stderr)
        return 1
    print('wrote %s (%d training points, %d test points)'
          % (args.output, len(train), sum(len(p) for _, p in series)))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
