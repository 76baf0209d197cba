"""Make the collection importable as ansible_collections.pgforest.cluster."""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'collections'))
sys.path.insert(0, os.path.join(REPO, 'tests'))
