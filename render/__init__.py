"""Geometry and rendering math with no learned parameters.

cameras -> rays (`rays`) -> samples along rays (`samplers`) -> a field callable -> composite
(`composite`) -> pixels, depth, opacity. Camera paths and video writing live here too. This
package never imports `nerf`: a field is any callable (positions, directions) -> (density, rgb).
"""
