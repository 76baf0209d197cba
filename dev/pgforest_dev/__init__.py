"""What the tests, the benchmarks and the demo share: the sandbox as a client sees it
(sandbox), the reference driver (forest_driver) and what the benchmarks share (bench).

The project's virtualenv finds this package through a .pth file (scripts/bootstrap.sh).
Importing it makes the collection importable as ansible_collections.pgforest.cluster from
this checkout, the one place that arranges it: collections/ansible_collections/pgforest/cluster
is a link to the checkout, as Ansible's collections_path expects."""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, 'collections')
if COLLECTIONS not in sys.path:
    sys.path.append(COLLECTIONS)
