"""Everything macelerate knows about mace-torch's module layout."""
