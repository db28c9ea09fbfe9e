"""The age model that train and predict share: network and head, losses, pretrained weights."""
